"""Operator-facing pt-BR text for codes the system speaks in: error codes, session
phases, durations and cron expressions. The code stays available as secondary text."""

from __future__ import annotations

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
