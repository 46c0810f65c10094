"""Health endpoints for load balancers (mission_control/health.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from mission_control import health
from tests import factories

pytestmark = pytest.mark.django_db


def test_liveness_answers_without_io(client: Client, django_assert_num_queries: object) -> None:
    with django_assert_num_queries(0):  # type: ignore[operator]
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readiness_reports_database_broker_and_a_stale_orchestrator(client: Client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "up",
        "broker": "up",
        "orchestrator": "stale",
    }


def test_readiness_sees_a_fresh_heartbeat(client: Client) -> None:
    factories.OrchestratorInstanceFactory(heartbeat_at=timezone.now())

    assert client.get("/readyz").json()["orchestrator"] == "fresh"


def test_readiness_fails_when_the_broker_does_not_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "broker_ok", lambda: False)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["broker"] == "down"


def test_readiness_fails_when_the_database_does_not_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "database_ok", lambda: False)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "down",
        "broker": "down",
        "orchestrator": "stale",
    }


def test_the_orchestrator_probe_follows_heartbeat_freshness(client: Client) -> None:
    now = timezone.now()
    assert client.get("/healthz/orchestrator").status_code == 503

    factories.OrchestratorInstanceFactory(heartbeat_at=now - dt.timedelta(minutes=10))
    assert client.get("/healthz/orchestrator").status_code == 503
    factories.OrchestratorInstanceFactory(heartbeat_at=now, stopped_at=now)
    assert client.get("/healthz/orchestrator").status_code == 503

    factories.OrchestratorInstanceFactory(heartbeat_at=now)
    response = client.get("/healthz/orchestrator")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "orchestrator": "fresh"}


def test_health_endpoints_are_exempt_from_the_ssl_redirect(
    client: Client, settings: object
) -> None:
    settings.SECURE_SSL_REDIRECT = True  # type: ignore[attr-defined]

    for path in ("/healthz", "/readyz", "/healthz/orchestrator"):
        assert client.get(path).status_code != 301, path
    assert client.get("/login/").status_code == 301
