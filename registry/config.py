"""Typed configuration keys with their defaults in code.

`ConfigEntry` rows only hold overrides, so an empty table works. Read a whole
snapshot once per step with `load()`; it costs one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class ConfigKey:
    key: str
    type: type
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "float", str: "str"}[self.type]

    def clean(self, value: Any) -> Any:
        """Validate and coerce `value`; raise ValidationError naming the key."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise ValidationError(f"{self.key} must be a boolean.")
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValidationError(f"{self.key} must be an integer.")
            try:
                value = int(value)
            except ValueError:
                raise ValidationError(f"{self.key} must be an integer.") from None
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValidationError(f"{self.key} must be a number.")
            try:
                value = float(value)
            except ValueError:
                raise ValidationError(f"{self.key} must be a number.") from None
        elif self.type is str and not isinstance(value, str):
            raise ValidationError(f"{self.key} must be a string.")
        if self.min_value is not None and value < self.min_value:
            raise ValidationError(f"{self.key} must be at least {self.min_value}.")
        if self.max_value is not None and value > self.max_value:
            raise ValidationError(f"{self.key} must be at most {self.max_value}.")
        return value


KEYS: dict[str, ConfigKey] = {
    k.key: k
    for k in [
        ConfigKey("paused", bool, False, "Managers claim no new work while true.", None, None),
        ConfigKey("session_tick_s", float, 5.0, "SessionManager poll interval (s).", 0.1, 3600),
        ConfigKey("worker_tick_s", float, 10.0, "WorkerManager poll interval (s).", 0.1, 3600),
        ConfigKey("mission_tick_s", float, 10.0, "MissionManager poll interval (s).", 0.1, 3600),
        ConfigKey("etl_tick_s", float, 5.0, "EtlManager outbox poll interval (s).", 0.1, 3600),
        ConfigKey("etl_retry_base_s", float, 2.0, "ETL outbox: first retry delay (s).", 0.01, 3600),
        ConfigKey(
            "etl_retry_cap_s", float, 30.0, "ETL outbox: longest retry delay (s).", 0.01, 86400
        ),
        ConfigKey("max_retries", int, 2, "Mission retries after the first attempt.", 0, 10),
        ConfigKey("max_item_attempts", int, 3, "Attempts per item before it fails.", 1, 20),
        ConfigKey(
            "max_session_rotations", int, 10, "Replacement sessions per mission attempt.", 0, 1000
        ),
        ConfigKey(
            "session_stuck_after_s", int, 180, "No activity for this long means stuck.", 5, 86400
        ),
        ConfigKey(
            "session_open_timeout_s",
            int,
            120,
            "A session still creating after this long has failed.",
            5,
            86400,
        ),
        ConfigKey("retry_backoff_base_s", float, 30.0, "Mission retry backoff base (s).", 0, 86400),
        ConfigKey("retry_backoff_cap_s", float, 900.0, "Mission retry backoff cap (s).", 0, 86400),
        ConfigKey("retry_jitter", float, 0.2, "Jitter fraction applied to backoff.", 0, 1),
        ConfigKey("proxy_cooldown_s", int, 300, "Rest of a proxy after a failure (s).", 0, 86400),
        ConfigKey("lease_s", int, 60, "Lease length of a claimed row (s).", 5, 3600),
        ConfigKey("claim_batch_size", int, 50, "Rows claimed per statement.", 1, 1000),
        ConfigKey("results_page_size", int, 500, "Results fetched per page from a job.", 1, 1000),
        ConfigKey(
            "circuit_failure_threshold", int, 5, "Failures in a row that open a breaker.", 1, 1000
        ),
        ConfigKey(
            "circuit_open_s", int, 30, "How long an open breaker waits to probe (s).", 1, 86400
        ),
        ConfigKey(
            "http_connect_timeout_s", float, 3.0, "Connect timeout of outgoing calls.", 0.1, 120
        ),
        ConfigKey("http_read_timeout_s", float, 15.0, "Read timeout of outgoing calls.", 0.1, 600),
        ConfigKey(
            "http_deadline_s",
            float,
            30.0,
            "Total deadline of one outgoing call, retries included.",
            0.5,
            900,
        ),
        ConfigKey(
            "http_max_attempts",
            int,
            3,
            "Attempts of one outgoing call on transient failures.",
            1,
            10,
        ),
        ConfigKey(
            "uploads_enabled", bool, False, "Use uploaders (disabled in the seed).", None, None
        ),
        ConfigKey(
            "heartbeat_stale_after_s", int, 30, "An instance silent this long is gone.", 5, 3600
        ),
        # Webhooks, retention, proxy x site health (orchestrator/webhooks.py, retention.py,
        # proxy_health.py).
        ConfigKey("webhook_timeout_s", float, 10.0, "Timeout of one webhook delivery.", 0.5, 120),
        ConfigKey("webhook_backoff_base_s", float, 30.0, "Webhook retry backoff base.", 0, 86400),
        ConfigKey("webhook_backoff_cap_s", float, 3600.0, "Webhook retry backoff cap.", 1, 86400),
        ConfigKey(
            "webhook_max_age_s", int, 86400, "Webhook retries stop after this age.", 60, 604800
        ),
        ConfigKey("retention_events_days", int, 90, "Mission events kept (days).", 1, 3650),
        ConfigKey(
            "retention_items_days", int, 30, "Items of finished missions kept (days).", 1, 3650
        ),
        ConfigKey("retention_sessions_days", int, 30, "Ended sessions kept (days).", 1, 3650),
        ConfigKey(
            "retention_webhooks_days", int, 30, "Settled webhook deliveries kept (days).", 1, 3650
        ),
        ConfigKey("retention_batch_size", int, 1000, "Rows deleted per batch.", 10, 50000),
        ConfigKey(
            "proxy_health_threshold", float, 3.0, "Score that blocks a proxy for a site.", 1, 1000
        ),
        ConfigKey("site_breaker_window_s", int, 600, "Per-site breaker window (s).", 10, 86400),
        ConfigKey(
            "site_breaker_min_results", int, 20, "Results in a window before judging.", 1, 100000
        ),
        ConfigKey("site_breaker_block_rate", float, 0.5, "Block rate that pauses a site.", 0.01, 1),
        ConfigKey(
            "site_breaker_failed_sessions", int, 5, "Failed sessions that pause a site.", 1, 10000
        ),
        ConfigKey(
            "site_breaker_cooldown_s", int, 900, "Pause before a site is probed (s).", 1, 86400
        ),
        ConfigKey(
            "site_breaker_probe_results", int, 5, "Results of a probe that decide it.", 1, 10000
        ),
        ConfigKey(
            "proxy_health_block_s",
            int,
            1800,
            "How long a proxy stays blocked for a site.",
            1,
            604800,
        ),
    ]
}


class Config:
    """An immutable snapshot of every key: defaults overlaid with stored overrides."""

    def __init__(self, overrides: dict[str, Any] | None = None):
        values = {k.key: k.default for k in KEYS.values()}
        for key, raw in (overrides or {}).items():
            spec = KEYS.get(key)
            if spec is None:
                continue
            try:
                values[key] = spec.clean(raw)
            except ValidationError:
                continue  # a bad stored value falls back to the default
        # Stored before `check_pairs` existed: derive the stuck threshold from the lease.
        values["session_stuck_after_s"] = max(values["session_stuck_after_s"], values["lease_s"])
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def load() -> Config:
    from registry.models import ConfigEntry

    return Config(dict(ConfigEntry.objects.values_list("key", "value")))


def get(key: str) -> Any:
    from registry.models import ConfigEntry

    spec = KEYS[key]
    row = ConfigEntry.objects.filter(key=key).values_list("value", flat=True).first()
    if row is None:
        return spec.default
    try:
        return spec.clean(row)
    except ValidationError:
        return spec.default


def set_value(key: str, value: Any) -> Any:
    """Validate and store `value`; raises KeyError for an unknown key."""
    from registry.models import ConfigEntry

    spec = KEYS[key]
    cleaned = spec.clean(value)
    check_pairs(load().as_dict() | {key: cleaned})
    ConfigEntry.objects.update_or_create(key=key, defaults={"value": cleaned})
    return cleaned


def check_pairs(values: dict[str, Any]) -> None:
    """Keys that must agree with each other. A session is declared stuck only after a
    stalled holder's lease has run out (issue #15 case 2): `session_stuck_after_s`
    below `lease_s` would blame sessions for our own stalls."""
    if values["session_stuck_after_s"] < values["lease_s"]:
        raise ValidationError(
            f"session_stuck_after_s ({values['session_stuck_after_s']}) must be at least "
            f"lease_s ({values['lease_s']})."
        )


def reset(key: str) -> Any:
    from registry.models import ConfigEntry

    spec = KEYS[key]
    ConfigEntry.objects.filter(key=key).delete()
    return spec.default
