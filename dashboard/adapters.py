"""Seams to a few modules other parts of the project own: the orchestrator's status
summary, connection tests and proxy import, so a change of those signatures is absorbed
here. The views also read the models and call `orchestrator.actions` directly."""

from __future__ import annotations

import datetime as dt
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


def import_proxies(filename: str, stream: Any) -> ImportResult:
    """Validate every entry of a proxies JSON or CSV file (a rewindable binary file,
    read as a stream), then upsert all or nothing."""
    proxy_file = importers.ProxyFile.open(stream, filename)
    with proxy_file:
        return _import(proxy_file)


def _import(proxy_file: importers.ProxyFile) -> ImportResult:
    try:
        checked = proxy_file.check()
        if checked.not_an_array:
            raise checked.not_an_array
        if checked.error_count:
            raise ValidationError(
                [
                    f"Entrada {e.index + 1}{f' ({e.key})' if e.key else ''}: "
                    + "; ".join(f"{k}: {v}" for k, v in e.errors.items())
                    for e in checked.errors[:20]
                ]
            )
        summary = proxy_file.apply(total=checked.valid)
    except importers.FileRefused as exc:
        raise ValidationError(exc.message_pt) from None
    return ImportResult(summary.created, summary.updated)
