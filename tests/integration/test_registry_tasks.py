"""Slow registry work runs as django-q2 tasks (synchronous in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory
from django_q.tasks import async_task, result

from registry import admin as registry_admin
from registry import tasks
from registry.models import HealthStatus, Worker
from tests import factories
from tests.fakes.worker import FakeWorker

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_connection_tests_of_many_rows_run_as_a_task(fake_worker: FakeWorker) -> None:
    up = factories.WorkerFactory(base_url=fake_worker.base_url, api_key=fake_worker.api_key)
    down = factories.WorkerFactory(base_url="http://127.0.0.1:9/api/v1")

    task = async_task("registry.tasks.test_connections", "registry.Worker", [up.pk, down.pk])

    assert result(task) == {"ok": 1, "failed": 1}
    up.refresh_from_db()
    down.refresh_from_db()
    assert up.health_status == HealthStatus.OK and up.last_checked_at is not None
    assert down.health_status == HealthStatus.OFFLINE and down.last_error
    assert fake_worker.route_counts.get("GET /health") == 1


def test_the_admin_action_queues_big_selections(fake_worker: FakeWorker) -> None:
    workers = [
        factories.WorkerFactory(base_url=fake_worker.base_url, api_key=fake_worker.api_key)
        for _ in range(registry_admin.INLINE_TESTS + 1)
    ]
    request = RequestFactory().post("/admin/registry/worker/")
    request.user = factories.UserFactory(role="admin")  # type: ignore[assignment]
    messages: list[str] = []
    model_admin = site._registry[Worker]
    model_admin.message_user = lambda req, msg, level=None: messages.append(msg)  # type: ignore[method-assign,assignment]

    registry_admin.test_connection(
        model_admin, request, Worker.objects.filter(pk__in=[w.pk for w in workers])
    )

    assert "enfileirados" in messages[0]
    assert Worker.objects.filter(health_status=HealthStatus.OK).count() == len(workers)


def test_the_task_module_holds_only_tasks_production_queues() -> None:
    """`import_proxies` was a task nothing queued (imports run in the request or the
    command); the module keeps only what the admin enqueues."""
    assert not hasattr(tasks, "import_proxies")
    assert callable(tasks.test_connections)
