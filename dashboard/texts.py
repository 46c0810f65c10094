"""Operator-facing pt-BR text for codes the system speaks in: error codes, session
phases, durations and cron expressions. The code stays available as secondary text."""

from __future__ import annotations

import re
from dataclasses import dataclass

ERROR_TEXTS: dict[str, str] = {
    "SESSION_OPEN_FAILED": "Não foi possível abrir a sessão",
    "SESSION_PROVIDER_ERROR": "O provedor de navegadores falhou",
    "SESSION_STUCK": "Sessão travada",
    "SESSION_DISCONNECTED": "Sessão desconectada",
    "SESSION_FAILED": "Sessão falhou",
    "SESSION_ROTATIONS_EXHAUSTED": "Trocas de sessão esgotadas",
    "SCRAPE_BLOCKED": "Página bloqueada pelo site",
    "SCRAPE_TIMEOUT": "Página demorou demais para responder",
    "SCRAPE_PROXY_ERROR": "Falha no proxy",
    "SCRAPE_HTTP_ERROR": "O site respondeu com erro HTTP",
    "SCRAPE_DNS_ERROR": "Domínio não encontrado (DNS)",
    "SCRAPE_PARSE_ERROR": "Não foi possível ler a página",
    "SCRAPE_JOB_REJECTED": "O worker recusou o job",
    "SCRAPE_JOB_FAILED": "O job falhou no worker",
    "SCRAPE_ALL_ITEMS_FAILED": "Todos os itens falharam",
    "WRITER_REJECTED": "O writer recusou os registros",
    "WRITER_COUNT_MISMATCH": "O writer confirmou menos registros que os enviados",
    "WRITER_UNAVAILABLE": "Writer indisponível",
    "WRITER_NOT_CONFIGURED": "Nenhum writer configurado",
    "ALLOC_NO_WORKER": "Nenhum worker disponível",
    "ALLOC_NO_CAPACITY": "Sem capacidade livre nos workers",
    "ALLOC_NO_PROXY": "Nenhum proxy disponível",
    "ETL_UNAVAILABLE": "ETL indisponível",
    "ETL_REJECTED": "O ETL recusou o lote",
}

PHASES: dict[str, str] = {
    "idle": "ociosa",
    "queued": "na fila",
    "ready": "pronta",
    "navigating": "navegando",
    "extracting": "extraindo",
    "extraindo": "extraindo",
    "closed": "encerrada",
    "closing": "encerrando",
    "failed": "falhou",
    "retired": "aposentada",
    "opening": "abrindo",
}

WEEKDAYS = ["domingo", "segunda", "terça", "quarta", "quinta", "sexta", "sábado"]


def error_text(code: str) -> str:
    """A sentence for an error code; an unknown code reads as itself."""
    return ERROR_TEXTS.get(code, code)


def phase_text(phase: str) -> str:
    return PHASES.get(phase, phase.replace("_", " "))


def duration_text(ms: float | None) -> str:
    """1065 → "1,1 s"; 84 → "84 ms"; 125000 → "2 min 5 s"."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{round(ms)} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}".replace(".", ",") + " s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _hhmm(minute: str, hour: str) -> str | None:
    if minute.isdigit() and hour.isdigit():
        return f"{int(hour):02d}:{int(minute):02d}"
    return None


def cron_text(expr: str) -> str:
    """The common cron shapes in words ("todo dia às 06:00"); others as they are."""
    parts = expr.split()
    if len(parts) != 5:
        return expr
    minute, hour, dom, month, dow = parts
    at = _hhmm(minute, hour)
    if (dom, month) == ("*", "*") and at:
        if dow == "*":
            return f"todo dia às {at}"
        if dow == "1-5":
            return f"de segunda a sexta às {at}"
        if dow.isdigit() and int(dow) % 7 < 7:
            return f"toda {WEEKDAYS[int(dow) % 7]} às {at}"
    if (dom, month, dow) == ("*", "*", "*"):
        if hour == "*" and minute.isdigit():
            return f"a cada hora, no minuto {int(minute)}"
        if hour == "*" and minute.startswith("*/") and minute[2:].isdigit():
            return f"a cada {int(minute[2:])} min"
        if minute.isdigit() and hour.startswith("*/") and hour[2:].isdigit():
            return f"a cada {int(hour[2:])} h, no minuto {int(minute)}"
    if month == "*" and dow == "*" and dom.isdigit() and at:
        return f"todo dia {int(dom)} do mês às {at}"
    return expr


# What a manager's tick did (orchestrator.managers TickResult counts).
TICK_ACTIONS: dict[str, tuple[str, str]] = {
    "checked": ("worker verificado", "workers verificados"),
    "jobs_started": ("job iniciado", "jobs iniciados"),
    "pages": ("página lida", "páginas lidas"),
    "allocated": ("missão atribuída", "missões atribuídas"),
    "etl_runs": ("execução de ETL", "execuções de ETL"),
    "advanced": ("missão avançou", "missões avançaram"),
    "finalized": ("missão finalizada", "missões finalizadas"),
    "closed": ("sessão encerrada", "sessões encerradas"),
    "opened": ("sessão aberta", "sessões abertas"),
    "polled": ("sessão consultada", "sessões consultadas"),
    "ended": ("sessão terminou", "sessões terminaram"),
    "retired": ("sessão aposentada", "sessões aposentadas"),
    "replenished": ("sessão reposta", "sessões repostas"),
}


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def tick_text(did: object) -> str:
    """{'replenished': 8, 'polled': 1} → "8 sessões repostas · 1 sessão consultada"."""
    if not did:
        return "nada"
    if not isinstance(did, dict):
        return str(did)
    parts = []
    for key, n in did.items():
        one, many = TICK_ACTIONS.get(key, (key.replace("_", " "), key.replace("_", " ")))
        parts.append(plural(int(n), one, many) if isinstance(n, int) else f"{one}: {n}")
    return " · ".join(parts)


def error_line(text: str) -> str:
    """ "WRITER_UNAVAILABLE: writer-x não respondeu" → "Writer indisponível: writer-x não
    respondeu"; text without a known leading code is returned as it is."""
    code, sep, rest = (text or "").partition(":")
    if sep and code.strip() in ERROR_TEXTS:
        return f"{ERROR_TEXTS[code.strip()]}: {rest.strip()}"
    return text


# Codes the clients and the services speak (orchestrator.clients.base.ServiceError,
# docs/contracts): what an operator reads instead.
SERVICE_CODES: dict[str, str] = {
    "connect_error": "Falha de conexão",
    "network_error": "Conexão interrompida",
    "timeout": "Tempo esgotado",
    "deadline_exceeded": "Prazo esgotado",
    "invalid_response": "Resposta inválida do serviço",
    "invalid_request": "Pedido inválido",
    "invalid_url": "Endereço inválido",
    "invalid_json": "JSON inválido",
    "invalid_records": "Registros inválidos",
    "response_too_large": "Resposta grande demais",
    "too_large": "Grande demais",
    "batch_too_large": "Lote grande demais",
    "capacity_exhausted": "Worker sem capacidade",
    "session_busy": "Sessão ocupada",
    "session_not_ready": "Sessão ainda não está pronta",
    "session_not_found": "Sessão não encontrada no worker",
    "session_timeout": "Sessão expirou",
    "job_not_found": "Job não encontrado no worker",
    "provider_error": "O provedor de navegadores falhou",
    "proxy_error": "Falha no proxy",
    "proxy_connect_failed": "Não foi possível conectar ao proxy",
    "dns_error": "Domínio não encontrado (DNS)",
    "http_error": "O site respondeu com erro HTTP",
    "parse_error": "Não foi possível ler a página",
    "robots_disallowed": "Bloqueado pelo robots.txt",
    "count_mismatch": "Contagem de registros não confere",
    "unauthorized": "Chave de API recusada",
    "cancelled": "Cancelado",
}

HTTP_STATUS: dict[int, str] = {
    400: "Pedido recusado",
    401: "Chave de API recusada",
    403: "Acesso negado",
    404: "Não encontrado",
    408: "Tempo esgotado",
    409: "Conflito",
    429: "Limite de requisições atingido",
    500: "Erro interno do serviço",
    502: "Gateway com erro",
    503: "Serviço indisponível",
    504: "Gateway sem resposta",
}

# Exception names and English phrases from Python, httpx and browsers.
PHRASES: list[tuple[str, str]] = [
    ("navigation timeout", "Tempo esgotado ao navegar"),
    ("target closed", "O navegador fechou"),
    ("browser has been closed", "O navegador fechou"),
    ("browser closed", "O navegador fechou"),
    ("net::err_timed_out", "Tempo esgotado"),
    ("connection refused", "Conexão recusada"),
    ("connection failed", "Falha de conexão"),
    ("proxy error", "Falha no proxy"),
    ("request failed", "A requisição falhou"),
    ("connecterror", "Falha de conexão"),
    ("connectionrefusederror", "Conexão recusada"),
    ("connecttimeout", "Tempo esgotado ao conectar"),
    ("readtimeout", "Tempo esgotado ao ler a resposta"),
    ("timed out", "Tempo esgotado"),
    ("timeouterror", "Tempo esgotado"),
    ("name or service not known", "Domínio não encontrado (DNS)"),
    ("nodename nor servname", "Domínio não encontrado (DNS)"),
    ("temporary failure in name resolution", "Domínio não encontrado (DNS)"),
    ("err_proxy_connection_failed", "Não foi possível conectar ao proxy"),
    ("err_name_not_resolved", "Domínio não encontrado (DNS)"),
    ("err_connection", "Falha de conexão"),
    ("remoteprotocolerror", "Conexão interrompida"),
    ("connection reset", "Conexão interrompida"),
    ("certificate verify failed", "Certificado TLS inválido"),
    ("sslerror", "Falha de TLS"),
    ("ssl:", "Falha de TLS"),
    ("operationalerror", "Falha no banco de dados"),
    ("failed", "Falhou"),
    ("refused", "Recusado"),
    ("unavailable", "Indisponível"),
]

_TOKEN = re.compile(
    r"\b(http_(\d{3})|timeout|cancelled|unauthorized|[a-z]+(?:_[a-z]+)+|[A-Z]+(?:_[A-Z]+)+)\b"
)


@dataclass(frozen=True)
class HumanText:
    """A raw error as an operator reads it: `text` in pt-BR, `detail` the raw part
    (code and message as the system said it), empty when there is nothing to add."""

    text: str
    detail: str


def _code_sentence(token: str, status: str | None) -> str | None:
    if status:
        return HTTP_STATUS.get(int(status), f"O serviço respondeu HTTP {status}")
    return SERVICE_CODES.get(token) or ERROR_TEXTS.get(token)


def _leads(text: str, start: int) -> bool:
    """A code stands first, or right after "…: " (ours or a prefix like "worker:")."""
    return start == 0 or text[:start].endswith(": ")


def _from_code(text: str) -> HumanText | None:
    for match in _TOKEN.finditer(text):
        if "_" not in match.group(1) and not _leads(text, match.start()):
            continue  # a plain word ("Navigation timeout of …") is no code
        sentence = _code_sentence(match.group(1), match.group(2))
        if sentence is None:
            continue
        lead = text[: match.start()].rstrip(" :—-(")
        human = f"{lead}: {sentence}" if lead else sentence
        return HumanText(human, text[match.start() :].strip())
    return None


def _from_phrase(text: str) -> HumanText | None:
    low = text.lower()
    for phrase, sentence in PHRASES:
        if phrase in low:
            return HumanText(sentence, text)
    return None


def human_error(raw: str) -> HumanText:
    """ "connect_error: [Errno 111] Connection refused" → "Falha de conexão" with the raw
    text as detail; "Sessão sk-1 falhou: timeout (HTTP 504): …" → "Sessão sk-1 falhou:
    Tempo esgotado" + "timeout (HTTP 504): …". A text with no code or English phrase we
    know is pt-BR already (the engine's own sentences) and is kept as it is."""
    text = (raw or "").strip()
    if not text:
        return HumanText("", "")
    if re.fullmatch(r"[1-5]xx", text):
        return HumanText(f"O serviço respondeu HTTP {text}", text)
    found = _from_code(text) or _from_phrase(text)
    if found is None and text.lower().startswith("worker:"):
        # The worker's own words, in whatever language it speaks.
        found = HumanText("O worker informou um erro", text)
    return found or HumanText(text, "")
