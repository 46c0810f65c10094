"""Seams to a few modules other parts of the project own: the orchestrator's status
summary, connection tests and proxy import, so a change of those signatures is absorbed
here. The views also read the models and call `orchestrator.actions` directly."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from orchestrator.status import orchestrator_status as _orchestrator_status
from registry import connection, importers


def orchestrator_status(now: dt.datetime) -> dict[str, Any]:
    """Instances (alive only), managers' stats, queue, sessions, capacity, proxies."""
    return _orchestrator_status(now)


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    latency_ms: int | None = None
    # The probe's own words (a code or an English reason), shown humanized.
    error: str = ""


def test_connection(obj: Any) -> ConnectionResult:
    """Probe a worker/writer/uploader (GET /health) or a proxy; the outcome is also
    recorded on the row (health, latency, last error) by registry.connection."""
    result = connection.check_connection(obj)
    if result.ok:
        return ConnectionResult(True, "Conexão bem-sucedida", result.latency_ms)
    error = result.error or result.status_class or ""
    return ConnectionResult(False, f"Falha: {error or 'sem resposta'}", result.latency_ms, error)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int


def import_proxies(filename: str, content: bytes) -> ImportResult:
    """Validate every entry of a proxies JSON or CSV file, then upsert all or nothing."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("O arquivo precisa estar em UTF-8.") from None
    if filename.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"JSON inválido (linha {exc.lineno}).") from None
        parsed = importers.parse_proxies(data)
    else:
        parsed = importers.parse_proxies_csv(text)
    if parsed.errors:
        raise ValidationError(
            [
                f"Entrada {e.index + 1}{f' ({e.key})' if e.key else ''}: "
                + "; ".join(f"{k}: {v}" for k, v in e.errors.items())
                for e in parsed.errors[:20]
            ]
        )
    summary = importers.apply_proxies(parsed.rows)
    return ImportResult(summary.created, summary.updated)
