"""The circuit breaker on Worker/Writer/Uploader rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, cast

import pytest
from django.utils import timezone

from orchestrator.clients.breaker import allow_call, record_failure, record_success
from registry.models import HealthStatus, Service, Uploader, Worker, Writer
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 22, 11, 0, tzinfo=dt.UTC)


def make_worker(**fields: Any) -> Worker:
    return cast(Worker, factories.WorkerFactory(**fields))


def make_writer(**fields: Any) -> Writer:
    return cast(Writer, factories.WriterFactory(**fields))


def make_uploader(**fields: Any) -> Uploader:
    return cast(Uploader, factories.UploaderFactory(**fields))


FACTORIES: list[Callable[..., Service]] = [make_worker, make_writer, make_uploader]


def fail(service: Service, now: dt.datetime = NOW, error: str = "timeout") -> bool:
    return record_failure(service, now, error, threshold=3, open_s=30).opened


@pytest.mark.parametrize("factory", FACTORIES)
def test_it_opens_the_circuit_at_the_threshold(factory: Callable[..., Service]) -> None:
    service = factory(health_status="ok")
    first = record_failure(service, NOW, "timeout", threshold=3, open_s=30)
    assert (first.consecutive_failures, first.opened, first.just_opened) == (1, False, False)
    assert service.health_status == HealthStatus.DEGRADED
    assert service.circuit_open_until is None
    assert allow_call(service, NOW)

    assert not fail(service)
    third = record_failure(service, NOW, "HTTP 503", threshold=3, open_s=30)
    assert (third.consecutive_failures, third.opened, third.just_opened) == (3, True, True)

    stored = type(service)._default_manager.get(pk=service.pk)
    assert stored.health_status == HealthStatus.OFFLINE
    assert stored.circuit_open_until == NOW + dt.timedelta(seconds=30)
    assert stored.last_error == "HTTP 503"
    assert stored.last_checked_at == NOW
    assert service.circuit_open_until == stored.circuit_open_until  # instance refreshed
    assert not allow_call(service, NOW)
    assert not allow_call(service, NOW + dt.timedelta(seconds=29))


def test_it_allows_a_probe_once_the_open_period_is_over() -> None:
    worker = make_worker()
    for _ in range(3):
        fail(worker)
    assert not allow_call(worker, NOW + dt.timedelta(seconds=10))
    assert allow_call(worker, NOW + dt.timedelta(seconds=30))
    assert allow_call(worker, NOW + dt.timedelta(seconds=31))


def test_only_one_caller_wins_the_half_open_probe() -> None:
    worker = make_worker()
    for _ in range(3):
        fail(worker)
    later = NOW + dt.timedelta(seconds=31)
    other = Worker.objects.get(pk=worker.pk)  # another process's copy of the row
    assert allow_call(worker, later, probe_s=10)
    assert not allow_call(other, later, probe_s=10)  # stale copy: loses the claim
    assert not allow_call(Worker.objects.get(pk=worker.pk), later, probe_s=10)
    assert worker.circuit_open_until == later + dt.timedelta(seconds=10)
    # The probe's window passes without an answer: the next caller may probe.
    assert allow_call(
        Worker.objects.get(pk=worker.pk), later + dt.timedelta(seconds=10), probe_s=10
    )


def test_a_success_closes_the_circuit_and_resets_the_count() -> None:
    writer = make_writer()
    for _ in range(4):
        fail(writer)
    probe_at = NOW + dt.timedelta(seconds=40)
    assert allow_call(writer, probe_at)
    record_success(writer, probe_at, latency_ms=87)
    stored = Writer.objects.get(pk=writer.pk)
    assert stored.consecutive_failures == 0
    assert stored.health_status == HealthStatus.OK
    assert stored.circuit_open_until is None
    assert stored.last_seen_at == probe_at
    assert stored.last_latency_ms == 87
    assert writer.health_status == HealthStatus.OK  # instance refreshed
    assert allow_call(writer, probe_at)
    # The next failure starts a new count: degraded, not offline.
    assert not fail(writer, probe_at)
    assert Writer.objects.get(pk=writer.pk).health_status == HealthStatus.DEGRADED


def test_a_failed_probe_opens_the_circuit_again() -> None:
    uploader = make_uploader()
    for _ in range(3):
        fail(uploader)
    probe_at = NOW + dt.timedelta(seconds=35)
    assert allow_call(uploader, probe_at)
    result = record_failure(uploader, probe_at, "connect_error", threshold=3, open_s=30)
    assert result.opened
    assert not result.just_opened
    assert uploader.circuit_open_until == probe_at + dt.timedelta(seconds=30)
    assert not allow_call(uploader, probe_at + dt.timedelta(seconds=1))
    assert Uploader.objects.get(pk=uploader.pk).health_status == HealthStatus.OFFLINE


def test_a_success_may_report_degraded_and_keeps_the_latency_when_absent() -> None:
    worker = make_worker(last_latency_ms=12)
    record_success(worker, NOW, health_status=HealthStatus.DEGRADED)
    assert worker.health_status == HealthStatus.DEGRADED
    assert worker.last_latency_ms == 12
    assert worker.circuit_open_until is None


def test_failures_from_stale_copies_are_all_counted() -> None:
    worker = make_worker()
    copies = [Worker.objects.get(pk=worker.pk) for _ in range(3)]
    results = [record_failure(c, NOW, "timeout", threshold=3, open_s=30) for c in copies]
    assert [r.consecutive_failures for r in results] == [1, 2, 3]
    assert [r.just_opened for r in results] == [False, False, True]
    assert Worker.objects.get(pk=worker.pk).health_status == HealthStatus.OFFLINE


def test_last_error_is_redacted_and_truncated() -> None:
    worker = make_worker()
    fail(worker, error="proxy http://bob:s3cret@10.0.0.1:8000 said Bearer abc.def " + "x" * 5000)
    stored = Worker.objects.get(pk=worker.pk)
    assert "s3cret" not in stored.last_error
    assert "abc.def" not in stored.last_error
    assert len(stored.last_error) == 2000


def test_it_works_with_the_current_time() -> None:
    worker = make_worker()
    now = timezone.now()
    result = record_failure(worker, now, "timeout", threshold=1, open_s=5)
    assert result.just_opened
    assert not allow_call(worker, now)
    assert allow_call(worker, now + dt.timedelta(seconds=5))


def test_a_key_the_service_echoes_in_another_case_is_not_stored() -> None:
    worker = factories.WorkerFactory(api_key="chave-Secreta-123")

    record_failure(worker, NOW, "401: bad key CHAVE-SECRETA-123", threshold=3, open_s=30)

    worker.refresh_from_db()
    assert worker.last_error == "401: bad key ***"
