"""django-q2 tasks for slow one-off registry work: connection tests of many rows and big
imports. Thin: they call the same functions the API and admin use."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps

from registry import connection, importers

logger = logging.getLogger(__name__)

TESTABLE = {"registry.worker", "registry.writer", "registry.uploader", "registry.proxy"}


def test_connections(model_label: str, ids: list[int]) -> dict[str, int]:
    """Test each row's connection and record the result on it; returns ok/failed counts."""
    if model_label.lower() not in TESTABLE:
        raise ValueError(f"cannot test connections of {model_label}")
    model = apps.get_model(model_label)
    counts = {"ok": 0, "failed": 0}
    for obj in model._default_manager.filter(pk__in=ids).order_by("pk"):
        result = connection.check_connection(obj)
        counts["ok" if result.ok else "failed"] += 1
    logger.info("connection tests of %s: %s", model_label, counts)
    return counts


def import_proxies(
    payload: Any, *, fmt: str = "json", skip_invalid: bool = False
) -> dict[str, Any]:
    """Import proxies (a parsed JSON array, or CSV text) outside any web request."""
    parsed = (
        importers.parse_proxies_csv(payload) if fmt == "csv" else importers.parse_proxies(payload)
    )
    if parsed.errors and not skip_invalid:
        return {"imported": 0, "errors": [e.describe() for e in parsed.errors]}
    summary = importers.apply_proxies(parsed.rows)
    return {
        "imported": summary.created + summary.updated,
        "errors": [e.describe() for e in parsed.errors],
    }
