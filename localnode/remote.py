"""Sessions whose browser lives at a provider (Browserbase): opened after the local row
holds a slot, released once the local session ended, and reconciled at start and periodically so
no remote session keeps billing. No database lock is held across a provider call."""

from __future__ import annotations

import datetime as dt
import logging

from localnode import browserbase
from localnode.http import ApiError
from localnode.models import LocalSession, LocalWorkerState

log = logging.getLogger(__name__)

RELEASE_BATCH = 50


def providers() -> list[str]:
    """The providers this worker can start now (configured keys only)."""
    return ["local", browserbase.NAME] if browserbase.configured() else ["local"]


def record_provider_error(message: str) -> None:
    LocalWorkerState.get()
    LocalWorkerState.objects.filter(pk=1).update(provider_error=message[:300])


def clear_provider_error() -> None:
    LocalWorkerState.objects.filter(pk=1).exclude(provider_error="").update(provider_error="")


def open_remote(session: LocalSession, now: dt.datetime) -> LocalSession:
    """Create the Browserbase session of a new local `creating` row and make it ready.
    On failure the row is deleted (its slot freed, its key reusable) and an ApiError
    says what the client should do: 409 when Browserbase is full, 503 when it is down
    or refuses our key (infrastructure), 502 when it refused this session."""
    try:
        remote = browserbase.create_session(
            session.session_key,
            timeout_s=session.timeout_s,
            proxy_url=session.proxy_url,
            proxy_type=session.proxy_type,
            proxy_country=session.proxy_country,
        )
    except browserbase.ProviderFault as fault:
        LocalSession.objects.filter(pk=session.pk, status=LocalSession.Status.CREATING).delete()
        raise _api_error(fault) from None
    clear_provider_error()
    inspect_url = browserbase.inspector_url(remote.id)
    LocalSession.objects.filter(pk=session.pk).update(
        remote_id=remote.id,
        connect_url=remote.connect_url,
        inspect_url=inspect_url,
        status=LocalSession.Status.READY,
        phase="idle",
        last_activity_at=now,
    )
    session.refresh_from_db()
    return session


def _api_error(fault: browserbase.ProviderFault) -> ApiError:
    if fault.kind == "capacity":
        return ApiError(409, "capacity_exhausted", fault.message)
    if fault.kind == "auth":
        record_provider_error(fault.message)
        return ApiError(503, "provider_unavailable", fault.message)
    if fault.kind == "rejected":
        return ApiError(502, "provider_error", fault.message)
    return ApiError(503, "provider_unavailable", fault.message)


def release(session: LocalSession, now: dt.datetime) -> bool:
    """Release one ended session's remote browser; True once it is released."""
    if not session.remote_id or session.remote_released_at is not None:
        return True
    try:
        browserbase.release_session(session.remote_id)
    except browserbase.ProviderFault as fault:
        if fault.kind == "auth":
            record_provider_error(fault.message)
        log.warning("release of %s deferred: %s", session.remote_id, fault.message)
        return False
    LocalSession.objects.filter(pk=session.pk, remote_released_at__isnull=True).update(
        remote_released_at=now
    )
    return True


def release_ended(now: dt.datetime, limit: int = RELEASE_BATCH) -> int:
    """Release the remote browsers of sessions that ended (closed, cancelled, failed,
    timed out); those Browserbase could not release now are tried again later."""
    ended = LocalSession.objects.filter(
        status__in=LocalSession.ENDED, remote_released_at__isnull=True
    ).exclude(remote_id="")
    return sum(release(s, now) for s in ended.order_by("id")[:limit])


def reconcile(now: dt.datetime) -> int:
    """At start and periodically (the runner's loop): Browserbase sessions tagged by us
    that no live local session holds are released; a live one is adopted (it stays),
    found by its id or, for a row still `creating` whose id is not recorded yet, by its
    `session_key`. Returns how many were released."""
    try:
        running = browserbase.running_sessions()
    except browserbase.ProviderFault as fault:
        log.warning("reconcile skipped: %s", fault.message)
        return 0
    if not running:
        return 0
    holding = LocalSession.objects.filter(status__in=LocalSession.HOLDING)
    live_ids = set(holding.exclude(remote_id="").values_list("remote_id", flat=True))
    # A row still being created has no remote id yet: its key stands for it.
    live_keys = set(holding.filter(remote_id="").values_list("session_key", flat=True))
    released = 0
    for remote_id, key in running:
        if remote_id in live_ids or key in live_keys:
            continue
        try:
            browserbase.release_session(remote_id)
        except browserbase.ProviderFault as fault:
            log.warning("orphan %s not released: %s", remote_id, fault.message)
            continue
        LocalSession.objects.filter(remote_id=remote_id).update(remote_released_at=now)
        released += 1
    return released
