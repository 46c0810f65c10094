"""Worker API v1 (docs/contracts/worker-api.md) served by the local node.

The views only parse and answer; `create_session`, `close_session`, `create_job` and
`results_page` do the work. Jobs are executed elsewhere (`localnode.runner`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from localnode import engines, remote, serializers
from localnode.http import ApiError, api_view, as_int, invalid, json_body
from localnode.models import LocalJob, LocalResult, LocalSession, LocalWorkerState, recent_cutoff

VERSION = "1.4.0"
PROVIDERS = ["local", "browserbase"]  # known; `remote.providers()` says which run now
ENGINES = ("http", "browser")
MAX_JOB_ITEMS = serializers.MAX_JOB_ITEMS
MAX_PAGE = 1000
DEFAULT_PAGE = 100


# ---------------------------------------------------------------- representations


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def session_json(session: LocalSession) -> dict[str, Any]:
    return {
        "id": session.public_id,
        "session_key": session.session_key,
        "status": session.status,
        "phase": session.phase,
        "provider": session.provider,
        "engine": session.engine,
        "proxy_id": session.proxy_id or None,
        "provider_session_id": session.remote_id or None,
        "provider_inspect_url": session.inspect_url or None,
        "job_id": f"j-{session.current_job_id}" if session.current_job_id else None,
        "created_at": _iso(session.created_at),
        "last_activity_at": _iso(session.last_activity_at),
        "labels": session.labels,
        "error": (
            {"code": session.error_code, "message": session.error_message}
            if session.error_code
            else None
        ),
    }


def job_json(job: LocalJob) -> dict[str, Any]:
    return {
        "id": job.public_id,
        "job_key": job.job_key,
        "session_id": f"s-{job.session_id}",
        "status": job.status,
        "progress": {"total": job.total, "done": job.done, "failed": job.failed},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "error": (
            {"code": job.error_code, "message": job.error_message} if job.error_code else None
        ),
    }


def result_json(result: LocalResult) -> dict[str, Any]:
    body = _result_body(result)
    if result.status == "error" and result.snapshot:
        body["snapshot"] = result.snapshot
    return body


def _result_body(result: LocalResult) -> dict[str, Any]:
    return {
        "item_id": result.item_id,
        "url": result.url,
        "status": result.status,
        "http_status": result.http_status,
        "fetched_at": _iso(result.fetched_at),
        "final_url": result.final_url or result.url,
        "data": result.data,
        "error": (
            {"code": result.error_code, "message": result.error_message}
            if result.error_code
            else None
        ),
    }


# ---------------------------------------------------------------- validation


def validate_session_request(payload: dict[str, Any]) -> dict[str, Any]:
    """POST /sessions, checked by `serializers.SessionRequestSerializer`; 422 naming
    each bad field."""
    checked = serializers.SessionRequestSerializer(
        data=payload, providers=remote.providers(), engines=ENGINES
    )
    if not checked.is_valid():
        raise invalid(serializers.flat_errors(checked.errors))
    data = checked.validated_data
    proxy = data.get("proxy") or {}
    return {
        "session_key": data["session_key"],
        "provider": data["provider"],
        "engine": data["engine"],
        "timeout_s": data.get("timeout_s") or 900,
        "labels": data["labels"],
        "proxy_id": proxy.get("id") or "",
        "proxy_url": proxy.get("url") or "",
        "proxy_type": (proxy.get("type") or "")[:16],
        "proxy_country": (proxy.get("country") or "").upper(),
    }


def validate_job_request(payload: dict[str, Any]) -> dict[str, Any]:
    """POST /sessions/{id}/jobs, checked by `serializers.JobRequestSerializer`; the
    options come back as sent (unknown ones are ignored here, kept for the runner)."""
    checked = serializers.JobRequestSerializer(data=payload)
    if not checked.is_valid():
        raise invalid(serializers.job_errors(checked.errors))
    data = checked.validated_data
    return {
        "job_key": data["job_key"],
        "items": [{"item_id": i["item_id"], "url": i["url"]} for i in data["items"]],
        "options": payload.get("options") or {},
    }


# ---------------------------------------------------------------- actions


def active_sessions() -> int:
    return LocalSession.objects.filter(status__in=LocalSession.HOLDING).count()


def create_session(data: dict[str, Any], now: dt.datetime) -> tuple[LocalSession, bool]:
    """The session for `data["session_key"]`, creating it when new. Returns (session,
    created). Raises ApiError 409 when no slot is free, 502 when the engine cannot run."""
    existing = LocalSession.objects.filter(session_key=data["session_key"]).first()
    if existing is not None:
        return existing, False
    if data["engine"] == "browser" and data["provider"] == "local":
        reason = engines.browser_unavailable_reason()
        if reason:
            raise ApiError(502, "provider_error", f"Cannot start a browser: {reason}.")
    try:
        with transaction.atomic():
            # Locking the state row serializes creates: count and insert cannot interleave.
            state = LocalWorkerState.objects.select_for_update().filter(pk=1).first()
            if state is None:
                state = LocalWorkerState.get()
            existing = LocalSession.objects.filter(session_key=data["session_key"]).first()
            if existing is not None:
                return existing, False
            if active_sessions() >= state.max_sessions:
                raise ApiError(
                    409,
                    "capacity_exhausted",
                    f"All {state.max_sessions} session slots are in use.",
                )
            remote_browser = data["provider"] != "local"
            session = LocalSession.objects.create(
                **data,
                status=LocalSession.Status.CREATING
                if remote_browser
                else LocalSession.Status.READY,
                phase="creating" if remote_browser else "idle",
                created_at=now,
                last_activity_at=now,
            )
    except IntegrityError:
        # A concurrent request with the same key won the insert.
        return LocalSession.objects.get(session_key=data["session_key"]), False
    if session.status == LocalSession.Status.CREATING:
        session = remote.open_remote(session, now)  # outside the transaction
    return session, True


def close_session(public_id: str, now: dt.datetime) -> None:
    pk = as_int(public_id, "s-")
    if pk is None:
        return
    with transaction.atomic():
        # Its live jobs first, then the session: the order the job runner locks them in
        # (a job's row, then its session's), so a close never deadlocks with a runner.
        live = LocalJob.objects.filter(session_id=pk, status__in=["queued", "running"])
        list(live.order_by("id").select_for_update().values_list("id", flat=True))
        session = LocalSession.objects.select_for_update().filter(pk=pk).first()
        if session is None:
            return
        live.update(
            status=LocalJob.Status.CANCELLED,
            finished_at=now,
            error_code="cancelled",
            error_message="The session was closed.",
        )
        if session.status != LocalSession.Status.CLOSED:
            LocalSession.objects.filter(pk=pk).update(
                status=LocalSession.Status.CLOSED,
                phase="closed",
                current_job=None,
                closed_at=now,
                last_activity_at=now,
            )
    if session.remote_id:
        session.refresh_from_db()
        remote.release(session, now)


def get_session(public_id: str) -> LocalSession:
    pk = as_int(public_id, "s-")
    session = LocalSession.objects.filter(pk=pk).first() if pk is not None else None
    if session is None:
        raise ApiError(404, "session_not_found", f"No session {public_id}.")
    return session


def get_job(public_id: str) -> LocalJob:
    pk = as_int(public_id, "j-")
    job = LocalJob.objects.filter(pk=pk).first() if pk is not None else None
    if job is None:
        raise ApiError(404, "job_not_found", f"No job {public_id}.")
    return job


def create_job(
    session_public_id: str, data: dict[str, Any], now: dt.datetime
) -> tuple[LocalJob, bool]:
    session = get_session(session_public_id)
    existing = LocalJob.objects.filter(job_key=data["job_key"]).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            session = LocalSession.objects.select_for_update().get(pk=session.pk)
            existing = LocalJob.objects.filter(job_key=data["job_key"]).first()
            if existing is not None:
                return existing, False
            if session.status == LocalSession.Status.BUSY or session.current_job_id:
                raise ApiError(409, "session_busy", "A job is running on this session.")
            if session.status != LocalSession.Status.READY:
                raise ApiError(
                    409, "session_not_ready", f"The session is {session.status}, not ready."
                )
            job = LocalJob.objects.create(
                session=session,
                job_key=data["job_key"],
                items=data["items"],
                options=data["options"],
                total=len(data["items"]),
                created_at=now,
                # Accepted counts as started for the client; a runner claims it soon.
                started_at=now,
            )
            LocalSession.objects.filter(pk=session.pk).update(
                status=LocalSession.Status.BUSY,
                phase="queued",
                current_job=job,
                last_activity_at=now,
            )
    except IntegrityError:
        return LocalJob.objects.get(job_key=data["job_key"]), False
    return job, True


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid({"cursor": "not a cursor this worker issued"}) from None
    prefix, _, digits = raw.partition(":")
    if prefix != "seq" or not digits.isdigit():
        raise invalid({"cursor": "not a cursor this worker issued"})
    return int(digits)


def results_page(job: LocalJob, cursor: str | None, limit: int) -> dict[str, Any]:
    after = decode_cursor(cursor) if cursor else 0
    # The job's status is read before its results: a job seen finished has all of its
    # results committed already, so next_cursor=null never hides a late result.
    job.refresh_from_db(fields=["status"])
    finished = job.is_finished
    rows = list(
        LocalResult.objects.filter(job=job, sequence__gt=after).order_by("sequence")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    if finished and not more:
        next_cursor: str | None = None
    elif rows:
        next_cursor = encode_cursor(rows[-1].sequence)
    else:
        next_cursor = cursor or encode_cursor(after)
    return {
        "results": [result_json(r) for r in rows],
        "next_cursor": next_cursor,
        "job_status": job.status,
    }


# ---------------------------------------------------------------- views


@api_view(("GET",))
def health(request: HttpRequest) -> HttpResponse:
    state = LocalWorkerState.get()
    answer: dict[str, Any] = {"status": "degraded" if state.provider_error else "ok"}
    if state.provider_error:
        answer["error"] = {"code": "provider_unavailable", "message": state.provider_error}
    return JsonResponse(
        {
            **answer,
            "version": VERSION,
            "providers": remote.providers(),
            "engines": [
                e for e in ENGINES if e == "http" or engines.browser_unavailable_reason() is None
            ],
            "capacity": {"max_sessions": state.max_sessions, "active_sessions": active_sessions()},
            "runner": {"name": state.runner_name, "last_seen_at": _iso(state.runner_seen_at)},
        }
    )


@api_view(("GET", "POST"))
def sessions(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    if request.method == "POST":
        data = validate_session_request(json_body(request))
        session, created = create_session(data, now)
        return JsonResponse(session_json(session), status=201 if created else 200)
    held = LocalSession.objects.filter(
        Q(status__in=LocalSession.HOLDING) | Q(closed_at__gte=recent_cutoff(now))
    ).order_by("id")
    return JsonResponse({"sessions": [session_json(s) for s in held]})


@api_view(("GET", "DELETE"))
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    if request.method == "DELETE":
        close_session(session_id, timezone.now())
        return HttpResponse(status=204)
    return JsonResponse(session_json(get_session(session_id)))


@api_view(("POST",))
def session_jobs(request: HttpRequest, session_id: str) -> HttpResponse:
    get_session(session_id)  # 404 before a 422 about the body
    data = validate_job_request(json_body(request))
    job, created = create_job(session_id, data, timezone.now())
    return JsonResponse(job_json(job), status=202 if created else 200)


@api_view(("GET",))
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    return JsonResponse(job_json(get_job(job_id)))


@api_view(("GET",))
def job_results(request: HttpRequest, job_id: str) -> HttpResponse:
    job = get_job(job_id)
    raw_limit = request.GET.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise invalid({"limit": f"an integer between 1 and {MAX_PAGE}"})
    cursor = request.GET.get("cursor") or None
    return JsonResponse(results_page(job, cursor, int(raw_limit)))
