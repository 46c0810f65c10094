"""Webhooks: signed JSON deliveries of domain events to the endpoints that asked.

- Events come from the event bus (`events.event_published`): a delivery row per
  subscribed endpoint is written in the publisher's transaction, so a rolled-back
  transition sends nothing and a committed one is never lost.
- `deliver_due(now)` (a django-q2 schedule, also callable from any loop) claims due
  deliveries with a short fenced lease, POSTs them outside any transaction, records
  every attempt and reschedules failures with capped exponential backoff until the
  delivery is `webhook_max_age_s` (a day) old.
- Requests go through `clients.webhook.WebhookClient` (a `BaseClient`: timeouts,
  a total deadline, secret hygiene, one error type) on a guarded connection pool, so
  every request obeys the outbound policy (mission_control.outbound): the URL is
  resolved once and pinned, internal addresses are refused, redirects are not followed.
  Reply bodies and errors are kept short and shown to admins only.
- Each request carries `Idempotency-Key` (the same on every attempt and replay),
  `X-MC-Event`, `X-MC-Delivery`, `X-MC-Timestamp` and `X-MC-Signature:
  t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import httpx
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from orchestrator import events, leases
from orchestrator.clients.base import ServiceError
from orchestrator.clients.webhook import WebhookClient, guarded_http
from orchestrator.models import Mission, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from orchestrator.states import RetryPolicy
from registry import config
from registry.config import Config

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-MC-Signature"
TIMESTAMP_HEADER = "X-MC-Timestamp"
RESPONSE_BODY_LIMIT = 2000

# Webhook event name -> what it means (documented in the API and docs/features.md).
EVENTS: dict[str, str] = {
    "mission.queued": "missão enfileirada (criada, ou de volta à fila para nova tentativa)",
    "mission.atribuido": "sessões alocadas",
    "mission.extraindo": "primeiro job iniciado",
    "mission.armazenando": "todos os itens resolvidos; gravando",
    "mission.finalizado": "writer confirmou; missão concluída",
    "mission.erro": "missão terminou em erro",
    "mission.cancelado": "missão cancelada",
    "session.failed": "sessão falhou, travou ou desconectou",
    "quality.failed": "missão finalizada reprovou no controle de qualidade",
    "domain.paused": "domínio pausado pelo disjuntor por site",
    "worker.offline": "worker ficou offline (disjuntor aberto)",
    "writer.offline": "writer ficou offline (disjuntor aberto)",
    "webhook.test": "entrega de teste pedida por um operador",
}


def _now() -> dt.datetime:
    return timezone.now()


# --------------------------------------------------------------------------- enqueue


def mission_payload(mission_id: int) -> dict[str, Any]:
    mission = (
        Mission.objects.filter(pk=mission_id)
        .values(
            "id",
            "name",
            "domain",
            "status",
            "attempt",
            "error_code",
            "error_message",
            "wait_reason",
            "total_items",
            "done_items",
            "failed_items",
            "records_delivered",
        )
        .first()
    )
    return {"mission": mission} if mission else {"mission": {"id": mission_id}}


# The enabled endpoints, read once per orchestrator tick (`cached_endpoints`) instead of
# once per published event; None outside a tick (every call reads them).
_tick_cache: ContextVar[dict[str, list[WebhookEndpoint]] | None] = ContextVar(
    "webhook_endpoints", default=None
)


@contextlib.contextmanager
def cached_endpoints() -> Iterator[None]:
    """Within the block (one orchestrator tick), `subscribed` reads the enabled
    endpoints once; an endpoint saved or deleted meanwhile in this process drops the
    copy. Another process's change shows from the next tick on."""
    token = _tick_cache.set({})
    try:
        yield
    finally:
        _tick_cache.reset(token)


def _enabled_endpoints() -> list[WebhookEndpoint]:
    cache = _tick_cache.get()
    if cache is None:
        return list(WebhookEndpoint.objects.filter(enabled=True))
    if "enabled" not in cache:
        cache["enabled"] = list(WebhookEndpoint.objects.filter(enabled=True))
    return cache["enabled"]


def _endpoint_changed(sender: Any, **kwargs: Any) -> None:
    cache = _tick_cache.get()
    if cache is not None:
        cache.clear()


post_save.connect(_endpoint_changed, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoints")
post_delete.connect(_endpoint_changed, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoints")


def subscribed(event: str) -> list[WebhookEndpoint]:
    return [e for e in _enabled_endpoints() if e.wants(event)]


def enqueue(
    event: str,
    data: dict[str, Any],
    now: dt.datetime | None = None,
    endpoints: list[WebhookEndpoint] | None = None,
) -> int:
    """Write one pending delivery per enabled endpoint subscribed to `event`, in the
    caller's transaction. Returns how many."""
    now = now or _now()
    if endpoints is None:
        endpoints = subscribed(event)
    if not endpoints:
        return 0
    rows = []
    for endpoint in endpoints:
        delivery_id = uuid.uuid4().hex
        rows.append(
            WebhookDelivery(
                endpoint=endpoint,
                event=event,
                payload={
                    "id": delivery_id,
                    "event": event,
                    "created_at": now.isoformat(),
                    "data": data,
                },
                idempotency_key=delivery_id,
                next_attempt_at=now,
                created_at=now,
            )
        )
    WebhookDelivery.objects.bulk_create(rows)
    return len(rows)


def enqueue_for_event(
    name: str, payload: dict[str, Any], endpoints: list[WebhookEndpoint] | None = None
) -> int:
    """Turn a bus event into webhook deliveries (receiver of `event_published`)."""
    if name not in EVENTS:
        return 0
    data = dict(payload)
    mission_id = data.get("mission_id")
    if name.startswith("mission.") and isinstance(mission_id, int):
        data.update(mission_payload(mission_id))
    return enqueue(name, json.loads(json.dumps(data, cls=DjangoJSONEncoder)), endpoints=endpoints)


def _on_event(sender: Any, name: str, payload: dict[str, Any], **kwargs: Any) -> None:
    if name not in EVENTS:
        return
    try:
        # One cheap read on the hot path; the savepoint only when there is work.
        endpoints = subscribed(name)
        if not endpoints:
            return
        # A savepoint: a failure here must never break the publisher's transaction.
        with transaction.atomic():
            enqueue_for_event(name, payload, endpoints)
    except Exception:
        logger.exception("webhook enqueue failed for %s", name)


events.event_published.connect(_on_event, dispatch_uid="orchestrator.webhooks")


# --------------------------------------------------------------------------- deliver


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: check the signature and reject old timestamps."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff_s(attempts: int, cfg: Config) -> float:
    """Delay after the `attempts`-th failed attempt (1-based)."""
    policy = RetryPolicy(base_s=cfg.webhook_backoff_base_s, cap_s=cfg.webhook_backoff_cap_s)
    return policy.delay_s(attempts)


def _send(
    delivery: WebhookDelivery, endpoint: WebhookEndpoint, cfg: Config, http: httpx.Client
) -> tuple[int | None, str, str]:
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "X-MC-Event": delivery.event,
        "X-MC-Delivery": str(delivery.pk),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
    }
    client = WebhookClient(
        endpoint.url, timeout_s=cfg.webhook_timeout_s, body_limit=RESPONSE_BODY_LIMIT, http=http
    )
    try:
        response = client.post(
            body,
            headers=headers,
            idempotency_key=delivery.idempotency_key,
            secret=endpoint.secret,
        )
    except ServiceError as exc:
        return None, _failure(exc), ""
    text = response.text()
    if 200 <= response.status < 300:
        return response.status, "", text
    return response.status, f"HTTP {response.status}", text


def _failure(exc: ServiceError) -> str:
    """What an attempt that got no answer records. Coarse on purpose: details
    (refused vs reset, resolver messages) would make deliveries a probe of the network
    behind Mission Control; only the outbound policy's own refusals are spelled out."""
    if exc.code == "refused":
        return f"refused: {exc.message}"
    if exc.code == "invalid_url":
        return "refused: invalid URL"
    if exc.code in ("timeout", "deadline_exceeded") or exc.message.startswith(
        ("ConnectTimeout", "PoolTimeout")
    ):
        return "timeout"
    if exc.code == "connect_error":
        return "connection failed"
    return "request failed"


def http_client() -> httpx.Client:
    """The deliveries' connection pool: the outbound policy on every request, no
    redirects (`clients.webhook.guarded_http`)."""
    return guarded_http()


def deliver_due(
    now: dt.datetime | None = None,
    *,
    owner: str = "webhooks",
    limit: int = 50,
    client_factory: Callable[[], httpx.Client] | None = None,
) -> int:
    """Send every due pending delivery once. Returns how many were attempted."""
    now = now or _now()
    cfg = config.load()
    claimed = leases.claim(
        WebhookDelivery,
        Q(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now),
        owner=owner,
        lease_s=max(cfg.lease_s, cfg.webhook_timeout_s * 2),
        limit=limit,
        order_by=("next_attempt_at", "id"),
    )
    if not claimed:
        return 0
    deliveries = WebhookDelivery.objects.select_related("endpoint").in_bulk(
        [lease.id for lease in claimed]
    )
    attempted = 0
    with (client_factory or http_client)() as client:
        for lease in claimed:
            delivery = deliveries[lease.id]
            _deliver_one(delivery, lease, owner, now, cfg, client)
            attempted += 1
    return attempted


def _deliver_one(
    delivery: WebhookDelivery,
    lease: leases.Lease,
    owner: str,
    now: dt.datetime,
    cfg: Config,
    client: httpx.Client,
) -> None:
    endpoint = delivery.endpoint
    number = delivery.attempts + 1
    replay = delivery.replay_requested
    if not endpoint.enabled:
        leases.release(
            WebhookDelivery,
            lease,
            owner,
            status=WebhookDelivery.Status.FAILED,
            last_error="endpoint desativado",
            next_attempt_at=None,
        )
        return
    started = time.monotonic()
    status_code, error, body = _send(delivery, endpoint, cfg, client)
    duration_ms = int((time.monotonic() - started) * 1000)
    ok = not error
    with transaction.atomic():
        if ok:
            won = leases.release(
                WebhookDelivery,
                lease,
                owner,
                status=WebhookDelivery.Status.SUCCEEDED,
                replay_requested=False,
                attempts=number,
                last_status_code=status_code,
                last_error="",
                delivered_at=now,
                next_attempt_at=None,
            )
        else:
            retry_at = now + dt.timedelta(seconds=backoff_s(number, cfg))
            until = delivery.retry_until or delivery.created_at + dt.timedelta(
                seconds=cfg.webhook_max_age_s
            )
            expired = retry_at > until
            won = leases.release(
                WebhookDelivery,
                lease,
                owner,
                status=WebhookDelivery.Status.FAILED if expired else WebhookDelivery.Status.PENDING,
                replay_requested=False,
                attempts=number,
                last_status_code=status_code,
                last_error=error,
                next_attempt_at=None if expired else retry_at,
            )
        if not won:
            return
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=now,
            duration_ms=duration_ms,
            status_code=status_code,
            ok=ok,
            error=error,
            response_body=body,
            replay=replay,
        )
        if ok:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(last_success_at=now)
        else:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                last_failure_at=now, last_error=f"{delivery.event}: {error}"[:2000]
            )
    log = logger.info if ok else logger.warning
    log(
        "webhook %s %s attempt %s -> %s",
        delivery.pk,
        delivery.event,
        number,
        status_code or error,
        extra={"delivery_id": delivery.pk, "endpoint_id": endpoint.pk},
    )


def replay(delivery: WebhookDelivery, now: dt.datetime | None = None) -> WebhookDelivery:
    """Send a delivery again (same payload and idempotency key) at the next run."""
    now = now or _now()
    cfg = config.load()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=now,
        replay_requested=True,
        # A fresh window of retries from now.
        retry_until=now + dt.timedelta(seconds=cfg.webhook_max_age_s),
        # A process still sending the old attempt is fenced out.
        lease_token=F("lease_token") + 1,
        locked_by="",
        locked_until=None,
    )
    delivery.refresh_from_db()
    return delivery


def send_test(endpoint: WebhookEndpoint, now: dt.datetime | None = None) -> WebhookDelivery:
    """Queue a `webhook.test` delivery to one endpoint, whatever it subscribed to."""
    now = now or _now()
    delivery_id = uuid.uuid4().hex
    return WebhookDelivery.objects.create(
        endpoint=endpoint,
        event="webhook.test",
        payload={
            "id": delivery_id,
            "event": "webhook.test",
            "created_at": now.isoformat(),
            "data": {"endpoint": endpoint.name},
        },
        idempotency_key=delivery_id,
        next_attempt_at=now,
        created_at=now,
    )


def deliver_due_task() -> int:
    """django-q2 entry point (`orchestrator.webhooks.deliver_due_task`)."""
    return deliver_due()
