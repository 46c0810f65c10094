"""django-q2 tasks for slow one-off registry work: connection tests of many rows. Thin:
they call the same functions the API and admin use. (Proxy imports run in the request
or in `manage.py import_proxies`; they validate the whole file first, all or nothing.)"""

from __future__ import annotations

import logging

from django.apps import apps

from registry import connection

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
