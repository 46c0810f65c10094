"""Dashboard: the read-only webhooks page and the operator's replay of a delivery."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

SECRET = "s3gredo-que-nunca-aparece"


def _delivery(**kw: object) -> WebhookDelivery:
    endpoint = WebhookEndpoint.objects.create(
        name="ops",
        url="https://user:pw-da-url@hooks.example.com/in?token=tok-da-url",
        secret=SECRET,
        events=["mission.*"],
    )
    now = timezone.now()
    fields: dict[str, object] = {
        "event": "mission.finalizado",
        "payload": {"id": "abc", "event": "mission.finalizado"},
        "idempotency_key": "abc",
        "status": WebhookDelivery.Status.FAILED,
        "attempts": 5,
        "last_status_code": 500,
        "last_error": "erro do servidor",
        "created_at": now - dt.timedelta(hours=1),
    }
    fields.update(kw)
    return WebhookDelivery.objects.create(endpoint=endpoint, **fields)


def test_viewer_sees_endpoints_and_deliveries_without_secrets(
    login: Callable[..., Client],
) -> None:
    delivery = _delivery()
    response = login("viewer").get("/webhooks/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "ops" in body and "mission.*" in body and "hooks.example.com/in" in body
    assert f'data-delivery-id="{delivery.pk}"' in body
    assert "Desistiu" in body and "HTTP 500" in body and "erro do servidor" in body
    assert SECRET not in body
    assert "pw-da-url" not in body and "tok-da-url" not in body
    assert "Reenviar" not in body  # viewers cannot replay
    assert 'href="/webhooks/"' in body  # sidebar entry


def test_operator_replays_a_delivery(login: Callable[..., Client]) -> None:
    delivery = _delivery()
    client = login("operator")
    assert "Reenviar" in client.get("/webhooks/").content.decode()
    response = client.post(f"/webhooks/entregas/{delivery.pk}/reenviar/")
    assert response.status_code == 302 and response["Location"] == "/webhooks/"
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.replay_requested is True
    assert delivery.next_attempt_at is not None
    assert "será reenviada" in client.get("/webhooks/").content.decode()


def test_viewer_cannot_replay(login: Callable[..., Client]) -> None:
    delivery = _delivery()
    assert login("viewer").post(f"/webhooks/entregas/{delivery.pk}/reenviar/").status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED and not delivery.replay_requested


def test_replay_of_unknown_delivery_is_404(login: Callable[..., Client]) -> None:
    assert login("operator").post("/webhooks/entregas/999999/reenviar/").status_code == 404


def test_empty_page_and_anonymous_redirect(client: Client, login: Callable[..., Client]) -> None:
    anonymous = client.get("/webhooks/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    body = login("viewer").get("/webhooks/").content.decode()
    assert "Nenhum webhook cadastrado" in body and "Nenhuma entrega ainda" in body
