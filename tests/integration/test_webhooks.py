"""Webhooks: real HTTP deliveries to a receiver on loopback (http.server in a thread)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.admin.sites import site as admin_site
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator import actions, events, webhooks
from orchestrator.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from orchestrator.states import MissionStatus
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import build_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Events published inside a test's rolled-back transaction leave NOTIFY wake-ups
    # queued on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


SECRET = "s3cr3t-webhook-key-0123"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP endpoint on loopback that records every POST and answers `statuses`
    in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.received.append(Received(dict(self.headers), self.rfile.read(length)))
                code = receiver.statuses[min(len(receiver.received), len(receiver.statuses)) - 1]
                payload = b'{"ok": true}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def endpoint(url: str, events: list[str], **kw: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        name=kw.pop("name", "ops"), url=url, secret=SECRET, events=events, **kw
    )


def test_state_changes_are_delivered_signed_with_an_idempotency_key(receiver: Receiver) -> None:
    endpoint(receiver.url, ["mission.*"])
    mission = actions.create_mission(name="Hook", urls=["https://example.com/1"])

    assert webhooks.deliver_due(timezone.now()) == 1

    (got,) = receiver.received
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert got.headers["X-MC-Event"] == "mission.queued"
    assert got.headers["Idempotency-Key"] == delivery.idempotency_key
    assert got.headers["Content-Type"] == "application/json"
    assert webhooks.verify(SECRET, got.headers["X-MC-Signature"], got.body, now=time.time())
    assert not webhooks.verify(
        "wrong-secret", got.headers["X-MC-Signature"], got.body, now=time.time()
    )
    assert not webhooks.verify(
        SECRET, got.headers["X-MC-Signature"], got.body + b" ", now=time.time()
    )
    assert got.json["event"] == "mission.queued"
    assert got.json["data"]["mission"]["id"] == mission.pk
    assert got.json["data"]["mission"]["status"] == MissionStatus.QUEUED
    (attempt,) = WebhookAttempt.objects.all()
    assert (attempt.number, attempt.status_code, attempt.ok) == (1, 200, True)
    assert webhooks.deliver_due(timezone.now()) == 0


def test_failures_back_off_exponentially_and_give_up_after_a_day(receiver: Receiver) -> None:
    receiver.statuses = [500]
    endpoint(receiver.url, ["mission.queued"])
    start = timezone.now()
    actions.create_mission(name="Falha", urls=["https://example.com/1"], now=start)
    WebhookDelivery.objects.update(created_at=start, next_attempt_at=start)

    webhooks.deliver_due(start)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.next_attempt_at == start + dt.timedelta(seconds=30)
    assert webhooks.deliver_due(start + dt.timedelta(seconds=29)) == 0

    webhooks.deliver_due(start + dt.timedelta(seconds=30))
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert delivery.next_attempt_at == start + dt.timedelta(seconds=90)  # +60 s

    late = start + dt.timedelta(hours=23, minutes=59)
    webhooks.deliver_due(late)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED  # next try would pass a day
    assert delivery.next_attempt_at is None
    assert delivery.last_status_code == 500
    assert len(receiver.received) == 3
    assert list(delivery.attempt_log.values_list("number", "status_code", "ok")) == [
        (1, 500, False),
        (2, 500, False),
        (3, 500, False),
    ]
    assert len({r.headers["Idempotency-Key"] for r in receiver.received}) == 1
    assert WebhookEndpoint.objects.get().last_error == "mission.queued: HTTP 500"


def test_an_unreachable_endpoint_is_an_attempt_with_the_error(receiver: Receiver) -> None:
    url = receiver.url
    receiver.stop()  # nothing listens on that port any more
    endpoint(url, ["*"])
    actions.create_mission(name="Longe", urls=["https://example.com/1"])

    webhooks.deliver_due(timezone.now())

    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and not attempt.ok
    assert attempt.error == "connection failed"  # coarse: never a port scanner
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.PENDING


def test_only_subscribed_enabled_endpoints_get_deliveries(receiver: Receiver) -> None:
    endpoint(receiver.url, ["mission.finalizado"], name="fim")
    endpoint(receiver.url, ["mission.*"], name="off", enabled=False)
    endpoint(receiver.url, ["mission.queued", "session.failed"], name="fila")

    actions.create_mission(name="Sub", urls=["https://example.com/1"])

    assert list(WebhookDelivery.objects.values_list("endpoint__name", "event")) == [
        ("fila", "mission.queued")
    ]


def test_a_rolled_back_transition_sends_nothing(receiver: Receiver) -> None:
    endpoint(receiver.url, ["*"])
    with pytest.raises(RuntimeError), transaction.atomic():
        actions.create_mission(name="Desfeita", urls=["https://example.com/1"])
        raise RuntimeError("rollback")
    assert not WebhookDelivery.objects.exists()


def test_a_mission_run_by_the_engine_reports_finalizado(
    receiver: Receiver, fake_worker: FakeWorker, fake_writer: FakeWriter
) -> None:
    fleet = build_fleet(fake_worker, fake_writer)
    endpoint(receiver.url, ["mission.finalizado", "mission.erro"])
    mission = actions.create_mission(
        name="Motor", urls=[f"https://example.com/{i}" for i in range(6)]
    )

    fleet.drive_to(mission, MissionStatus.FINALIZADO)
    webhooks.deliver_due(timezone.now())

    (got,) = receiver.received
    assert got.json["event"] == "mission.finalizado"
    assert got.json["data"]["mission"]["done_items"] == 6
    assert got.json["data"]["mission"]["records_delivered"] == 6


def test_api_registers_endpoints_with_a_write_only_secret(
    admin_api: APIClient, viewer_api: APIClient, receiver: Receiver
) -> None:
    created = admin_api.post(
        "/api/webhooks/",
        {"name": "ops", "url": receiver.url, "secret": SECRET, "events": ["mission.*"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert "secret" not in created.json()
    bad = admin_api.post(
        "/api/webhooks/",
        {"name": "x", "url": receiver.url, "secret": SECRET, "events": ["nope"]},
        format="json",
    )
    assert bad.status_code == 400 and "events" in bad.json()["error"]["fields"]
    denied = viewer_api.post(
        "/api/webhooks/", {"name": "v", "url": receiver.url, "secret": SECRET, "events": ["*"]}
    )
    assert denied.status_code == 403

    pk = created.json()["id"]
    assert admin_api.post(f"/api/webhooks/{pk}/test/").status_code == 202
    webhooks.deliver_due(timezone.now())
    assert receiver.received[0].json["event"] == "webhook.test"


def test_every_attempt_is_visible_and_a_delivery_can_be_replayed(
    receiver: Receiver, operator_api: APIClient, viewer_api: APIClient
) -> None:
    endpoint(receiver.url, ["mission.queued"])
    actions.create_mission(name="Replay", urls=["https://example.com/1"])
    webhooks.deliver_due(timezone.now())
    delivery = WebhookDelivery.objects.get()

    assert viewer_api.post(f"/api/webhook-deliveries/{delivery.pk}/replay/").status_code == 403
    replayed = operator_api.post(f"/api/webhook-deliveries/{delivery.pk}/replay/")
    assert replayed.status_code == 202
    assert replayed.json()["status"] == "pending"
    webhooks.deliver_due(timezone.now())

    listed = viewer_api.get("/api/webhook-deliveries/?status=succeeded").json()["results"]
    (row,) = listed
    assert [(a["number"], a["replay"]) for a in row["attempt_log"]] == [(1, False), (2, True)]
    first, second = receiver.received
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body


def test_admin_lists_deliveries_and_replays_them(client: Client, receiver: Receiver) -> None:
    user = factories.UserFactory(role="admin")
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    endpoint(receiver.url, ["mission.queued"])
    actions.create_mission(name="Admin", urls=["https://example.com/1"])
    webhooks.deliver_due(timezone.now())
    delivery = WebhookDelivery.objects.get()

    assert WebhookDelivery in admin_site._registry
    page = client.get("/admin/orchestrator/webhookdelivery/")
    assert page.status_code == 200 and "mission.queued" in page.content.decode()
    detail = client.get(f"/admin/orchestrator/webhookdelivery/{delivery.pk}/change/")
    assert detail.status_code == 200
    endpoint_page = client.get(
        f"/admin/orchestrator/webhookendpoint/{delivery.endpoint_id}/change/"
    )
    assert SECRET not in endpoint_page.content.decode()
    client.post(
        "/admin/orchestrator/webhookdelivery/",
        {"action": "replay_deliveries", "_selected_action": [delivery.pk]},
    )
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING and delivery.replay_requested


def test_a_tick_reads_the_endpoints_once_and_sees_an_endpoint_saved_meanwhile(
    django_assert_num_queries: Any,
) -> None:
    endpoint("http://127.0.0.1:9/a", ["mission.finalizado"])
    with webhooks.cached_endpoints():
        with django_assert_num_queries(1):
            for _ in range(3):
                assert len(webhooks.subscribed("mission.finalizado")) == 1
        endpoint("http://127.0.0.1:9/b", ["mission.finalizado"], name="b")
        assert len(webhooks.subscribed("mission.finalizado")) == 2
    WebhookEndpoint.objects.filter(name="b").update(enabled=False)
    assert len(webhooks.subscribed("mission.finalizado")) == 1  # outside a tick: fresh
