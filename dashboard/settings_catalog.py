"""Configurações as an operator reads them: every key of registry.config in one group,
with a pt-BR description of what changing it does and its unit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from dashboard.forms import to_pt
from registry import config
from registry.models import ConfigEntry

# (key, what it is and what changing it does)
GROUPS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Agendamento",
        "Ritmo dos gerenciadores do orquestrador.",
        [
            ("paused", "Pausa geral: enquanto ativo, nenhum trabalho novo é assumido."),
            (
                "session_tick_s",
                "Intervalo do gerenciador de sessões. Menor reage antes, custa mais consultas.",
            ),
            ("worker_tick_s", "Intervalo do gerenciador de workers (jobs e resultados)."),
            (
                "mission_tick_s",
                "Intervalo do gerenciador de missões (atribuir, avançar, finalizar).",
            ),
            (
                "etl_tick_s",
                "Intervalo do envio ao ETL (fila de saída: criação, progresso, finalização).",
            ),
            ("lease_s", "Quanto dura a reserva de uma linha assumida por uma instância."),
            (
                "claim_batch_size",
                "Linhas assumidas por vez. Maior anda mais rápido, trava mais linhas.",
            ),
            ("results_page_size", "Resultados buscados por página de um job."),
            (
                "heartbeat_stale_after_s",
                "Instância em silêncio por este tempo é considerada parada.",
            ),
        ],
    ),
    (
        "Retentativas",
        "Quantas vezes e com que espera missões, itens e chamadas tentam de novo.",
        [
            (
                "max_retries",
                "Novas tentativas da missão depois da primeira; ao esgotar, vai a ERRO.",
            ),
            ("max_item_attempts", "Tentativas de cada item antes de ele falhar de vez."),
            (
                "retry_backoff_base_s",
                "Espera inicial entre tentativas da missão; dobra a cada vez.",
            ),
            ("retry_backoff_cap_s", "Espera máxima entre tentativas da missão."),
            (
                "retry_jitter",
                "Variação aleatória da espera (0,2 = ±20%), para não tentarem juntas.",
            ),
            ("etl_retry_base_s", "Espera inicial para reenviar ao ETL um passo que falhou."),
            ("etl_retry_cap_s", "Espera máxima entre reenvios ao ETL (respeita Retry-After)."),
            ("http_connect_timeout_s", "Tempo para conectar a um worker, writer ou ETL."),
            ("http_read_timeout_s", "Tempo para ler a resposta de uma chamada externa."),
            ("http_deadline_s", "Prazo total de uma chamada externa, com as novas tentativas."),
            ("http_max_attempts", "Tentativas de uma chamada externa em falhas passageiras."),
        ],
    ),
    (
        "Sessões e proxies",
        "Quando uma sessão é dada como travada e como os proxies descansam.",
        [
            (
                "max_session_rotations",
                "Sessões substitutas por tentativa da missão antes de desistir.",
            ),
            (
                "session_stuck_after_s",
                "Sem atividade por este tempo, a sessão é dada como travada.",
            ),
            ("session_open_timeout_s", "Sessão ainda abrindo depois deste tempo conta como falha."),
            ("proxy_cooldown_s", "Descanso de um proxy depois de uma falha."),
            ("proxy_health_threshold", "Pontuação de falhas que bloqueia um proxy para um site."),
            ("proxy_health_block_s", "Quanto tempo um proxy fica bloqueado para aquele site."),
            ("uploads_enabled", "Usar os uploaders cadastrados (desligado no início)."),
        ],
    ),
    (
        "Webhooks",
        "Entrega de eventos para os endpoints cadastrados.",
        [
            ("webhook_timeout_s", "Tempo máximo de uma entrega."),
            ("webhook_backoff_base_s", "Espera inicial antes de reenviar uma entrega que falhou."),
            ("webhook_backoff_cap_s", "Espera máxima entre reenvios."),
            ("webhook_max_age_s", "Depois desta idade a entrega desiste de reenviar."),
        ],
    ),
    (
        "Retenção",
        "Por quanto tempo o histórico fica guardado antes da poda.",
        [
            ("retention_events_days", "Eventos de missões terminadas."),
            (
                "retention_items_days",
                "Itens de missões terminadas (os contadores ficam na missão).",
            ),
            ("retention_sessions_days", "Sessões encerradas."),
            ("retention_webhooks_days", "Entregas de webhook concluídas ou desistidas."),
            (
                "retention_batch_size",
                "Linhas apagadas por lote; menor segura travas por menos tempo.",
            ),
        ],
    ),
    (
        "Disjuntores",
        "Quando um serviço ou um site é pausado por falhar demais.",
        [
            ("circuit_failure_threshold", "Falhas seguidas de um serviço que abrem o disjuntor."),
            ("circuit_open_s", "Quanto tempo o disjuntor aberto espera antes de sondar de novo."),
            ("site_breaker_window_s", "Janela em que os resultados de um site são avaliados."),
            ("site_breaker_min_results", "Resultados mínimos na janela antes de julgar o site."),
            ("site_breaker_block_rate", "Fração de bloqueios que pausa o site (0,5 = 50%)."),
            ("site_breaker_failed_sessions", "Sessões falhas na janela que pausam o site."),
            ("site_breaker_cooldown_s", "Pausa do site antes de uma sondagem."),
            ("site_breaker_probe_results", "Resultados da sondagem que decidem retomar ou não."),
        ],
    ),
]

DESCRIPTIONS: dict[str, str] = {key: text for _, _, keys in GROUPS for key, text in keys}


@dataclass(frozen=True)
class Unit:
    short: str
    long: str


def unit(key: str) -> Unit | None:
    if key.endswith("_s"):
        return Unit("s", "segundos")
    if key.endswith("_days"):
        return Unit("dias", "dias")
    return None


def groups() -> list[tuple[str, str, list[str]]]:
    """(title, description, keys) as the page shows them, numbered from 1; a key no
    group names lands in a last "Outras"."""
    out = [(t, d, [k for k, _ in keys if k in config.KEYS]) for t, d, keys in GROUPS]
    named = {k for _, _, keys in out for k in keys}
    rest = [k for k in config.KEYS if k not in named]
    if rest:
        out.append(("Outras", "", rest))
    return out


def group_keys(index: int) -> tuple[str, list[str]]:
    """Title and keys of group `index` (1-based); IndexError if there is none."""
    if index < 1:
        raise IndexError(index)
    title, _, keys = groups()[index - 1]
    return title, keys


def _raw(key: str, data: Mapping[str, str]) -> str:
    raw = str(data.get(key, ""))
    spec = config.KEYS[key]
    if spec.type is bool:
        return "true" if raw in ("true", "on", "1") else "false"
    if spec.type in (int, float):
        return raw.strip().replace(",", ".")  # pt-BR decimal comma
    return raw


@dataclass
class GroupSave:
    """What saving one group did: `errors` per key (then nothing was saved), the
    values posted (to show them back) and the keys whose value changed."""

    errors: dict[str, str] = field(default_factory=dict)
    posted: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)


def save_group(keys: list[str], data: Mapping[str, str]) -> GroupSave:
    """Validate every posted key of a group, then store all the changed ones in one
    transaction, or none: a group is never half saved."""
    result = GroupSave()
    cleaned: dict[str, Any] = {}
    for key in keys:
        if key not in data:
            continue  # not on the form: left as it is
        result.posted[key] = str(data[key])  # shown back as typed
        try:
            cleaned[key] = config.KEYS[key].clean(_raw(key, data))
        except ValidationError as exc:
            result.errors[key] = to_pt(exc.messages[0])
    if result.errors:
        return result
    with transaction.atomic():
        # Locked so two admins saving groups at once cannot both pass check_pairs.
        stored = dict(ConfigEntry.objects.select_for_update().values_list("key", "value"))
        current = config.Config(stored).as_dict()
        try:
            config.check_pairs(current | cleaned)
        except ValidationError as exc:
            target = "session_stuck_after_s" if "session_stuck_after_s" in cleaned else keys[0]
            result.errors[target] = to_pt(exc.messages[0])
            return result
        for key, value in cleaned.items():
            if value != current[key] or (key in stored and stored[key] != value):
                ConfigEntry.objects.update_or_create(key=key, defaults={"value": value})
                result.changed.append(key)
    return result
