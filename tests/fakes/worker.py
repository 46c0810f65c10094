"""A fake Worker speaking docs/contracts/worker-api.md over real HTTP on loopback.

Jobs advance lazily: before each request (and on ``tick()``) every running job finishes
the items that are due by the clock. Item ``i`` of a job is due ``item_latency`` seconds
after item ``i - 1`` (plus ``slow_item_s`` for URLs containing ``/slow``). With the
default ``item_latency = 0`` the job answers ``running`` to the POST that created it and
is ``completed`` on the next request. ``jobs_paused = True`` holds every job where it is.

What each item returns (first rule that matches):
1. ``fail_items[url]`` — an error code (``timeout``, ``blocked``, ``http_error``, ...);
   ``fail_on_proxy[proxy_id][url]`` the same on sessions of that proxy only;
2. the session's proxy id in ``blocked_proxies`` — ``blocked`` (403);
3. URL rules: ``/status/403`` and ``/status/429`` → ``blocked``; ``/status/NNN``
   (NNN >= 400) → ``http_error`` with that status; ``/captcha`` → ``blocked``;
   ``/timeout`` → ``timeout``; ``/proxy-error``, ``/dns-error``, ``/parse-error``;
4. otherwise ``ok`` with ``data = {"title", "text_length", "links"}``
   (``data_for(item)`` overrides the data when set).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import (
    KEY_RE,
    ApiError,
    FakeServer,
    Request,
    Response,
    invalid_request,
    iso,
)

SESSION_STATUSES = ("creating", "ready", "busy", "stuck", "disconnected", "failed", "closed")
FINISHED_JOB = frozenset({"completed", "failed", "cancelled"})
_STATUS_RULE = re.compile(r"/status/(\d{3})(?:/|$)")
_ERROR_HTTP_STATUS = {"blocked": 403, "http_error": 500}


@dataclass
class FakeSession:
    id: str
    session_key: str
    provider: str
    engine: str
    proxy: dict[str, Any] | None
    timeout_s: int
    labels: dict[str, Any]
    created_t: float
    ready_t: float
    status: str = "creating"
    phase: str = "starting"
    job_id: str | None = None
    last_activity_t: float = 0.0
    error: dict[str, str] | None = None
    closed_t: float | None = None  # when it became closed or failed
    dropped: bool = False  # gone from the worker (GET /sessions no longer lists it)
    stuck: bool = False  # frozen: no activity, jobs make no progress

    @property
    def proxy_id(self) -> str | None:
        return None if self.proxy is None else self.proxy.get("id")

    @property
    def active(self) -> bool:
        """Holds a capacity slot."""
        return not self.dropped and self.status not in ("failed", "closed")


@dataclass
class FakeJob:
    id: str
    job_key: str
    session_id: str
    items: list[dict[str, Any]]
    options: dict[str, Any]
    started_t: float
    due: list[float]  # when each item finishes
    status: str = "running"
    finished_t: float | None = None
    error: dict[str, str] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)  # in finish order

    @property
    def done(self) -> int:
        return sum(1 for r in self.results if r["status"] == "ok")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r["status"] == "error")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB


def encode_cursor(job_id: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{job_id}|{offset}".encode()).decode().rstrip("=")


def decode_cursor(job_id: str, cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        owner, _, offset = raw.rpartition("|")
        if owner != job_id or not offset.isdigit():
            raise ValueError(cursor)
        return int(offset)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise invalid_request({"cursor": "not a cursor of this job"}) from None


# A 1x1 PNG.
FAKE_PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def fake_snapshot(url: str, http_status: int | None, code: str) -> dict[str, Any]:
    marker = '<div class="g-recaptcha"></div>' if code == "blocked" else ""
    return {
        "final_url": url.replace("://", "://user:secret@", 1),
        "http_status": http_status,
        "headers": {"Content-Type": "text/html", "Set-Cookie": "sid=secret"},
        "html_excerpt": f"<html><body><h1>fake {code}</h1>{marker}</body></html>",
        "screenshot_png_base64": FAKE_PNG_BASE64,
    }


class FakeWorker(FakeServer):
    """See the module docstring. Every public attribute is a switch settable at run time."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        max_sessions: int = 8,
        providers: tuple[str, ...] = ("local", "browserbase"),
        version: str = "1.4.0",
        ready_delay: float = 0.0,
        item_latency: float = 0.0,
        slow_item_s: float = 60.0,
        retention_s: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.max_sessions = max_sessions
        self.providers = list(providers)
        self.version = version
        self.health_status = "ok"
        self.ready_delay = ready_delay  # math.inf keeps sessions "creating"
        self.item_latency = item_latency
        self.slow_item_s = slow_item_s
        self.retention_s = retention_s
        self.jobs_paused = False
        self.blocked_proxies: set[str] = set()
        self.fail_items: dict[str, str] = {}
        self.fail_on_proxy: dict[str, dict[str, str]] = {}
        self.provider_error_for_proxies: set[str] = set()
        self.provider_error_all = False  # every new session → 502 provider_error
        self.sessions_get_stuck = False  # every session frozen (see stick_session)
        # A session fails (with this error code) as soon as a job starts on it, its
        # job failing with it: a proxy that cannot reach the site (issue #15, case 3).
        self.fail_sessions_on_job: str | None = None
        self.stuck_status: str | None = "stuck"  # reported status of a stuck session
        self.data_for: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        # True: error results of the v1.1 codes carry a `snapshot` (with a proxy
        # credential in its URL and a secret header, which Mission Control must scrub).
        self.snapshots = False
        # State and inspection.
        self.sessions: dict[str, FakeSession] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.session_keys_seen: list[str] = []  # every POST /sessions key, repeats included
        self.job_keys_seen: list[str] = []  # every POST .../jobs key, repeats included
        self.duplicate_session_requests = 0  # POST /sessions answered 200 (known key)
        self.duplicate_job_requests = 0  # POST .../jobs answered 200 (known key)
        self._seq = 0

        self.route("GET", "/health", self._health)
        self.route("POST", "/sessions", self._create_session, body=True)
        self.route("GET", "/sessions", self._list_sessions)
        self.route("GET", "/sessions/{id}", self._get_session)
        self.route("DELETE", "/sessions/{id}", self._delete_session)
        self.route("POST", "/sessions/{id}/jobs", self._create_job, body=True)
        self.route("GET", "/jobs/{id}", self._get_job)
        self.route("GET", "/jobs/{id}/results", self._results)

    # ------------------------------------------------------------ test controls
    def drop_session(self, session_id: str) -> None:
        """The worker forgets the session: absent from GET /sessions, 404 everywhere."""
        with self.lock:
            s = self.sessions[session_id]
            s.dropped = True
            s.closed_t = self.now()

    def fail_session(
        self, session_id: str, code: str = "proxy_connect_failed", message: str = ""
    ) -> None:
        """Status ``failed`` with ``error``; its running job fails too."""
        with self.lock:
            s = self.sessions[session_id]
            now = self.now()
            s.status, s.phase, s.closed_t = "failed", "idle", now
            s.error = {"code": code, "message": message or f"injected {code}"}
            self._end_job(s, "failed", now, {"code": "session_failed", "message": code})

    def stick_session(self, session_id: str, stuck: bool = True) -> None:
        """Freeze one session: ``last_activity_at`` stops, its job makes no progress, and
        its status reads ``stuck_status`` (None: keeps its status)."""
        with self.lock:
            self.sessions[session_id].stuck = stuck

    def advance_job(self, job_id: str, n: int | None = None) -> None:
        """Finish the next ``n`` items (all when None) now, paused or not."""
        with self.lock:
            job = self.jobs[job_id]
            s = self.sessions[job.session_id]
            left = len(job.items) - len(job.results)
            self._finish_items(job, s, left if n is None else min(n, left), self.now())

    def tick(self) -> None:
        """Advance sessions and jobs to the clock (done before every request anyway)."""
        with self.lock:
            self._advance(self.now())

    def session_by_key(self, key: str) -> FakeSession | None:
        with self.lock:
            return next((s for s in self.sessions.values() if s.session_key == key), None)

    def job_by_key(self, key: str) -> FakeJob | None:
        with self.lock:
            return next((j for j in self.jobs.values() if j.job_key == key), None)

    def active_sessions(self) -> list[FakeSession]:
        with self.lock:
            return [s for s in self.sessions.values() if s.active]

    def session_json(self, session_id: str) -> dict[str, Any]:
        with self.lock:
            return self._session_body(self.sessions[session_id])

    def job_json(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self._job_body(self.jobs[job_id])

    # -------------------------------------------------------------- the clock
    def before_request(self, request: Request) -> None:
        self._advance(self.now())

    def _is_stuck(self, s: FakeSession) -> bool:
        return s.stuck or self.sessions_get_stuck

    def _advance(self, now: float) -> None:
        for s in self.sessions.values():
            if s.dropped or self._is_stuck(s):
                continue
            if s.status == "creating" and now >= s.ready_t:
                s.status, s.phase, s.last_activity_t = "ready", "idle", s.ready_t
        if self.jobs_paused:
            return
        for job in self.jobs.values():
            if job.status != "running":
                continue
            s = self.sessions[job.session_id]
            if s.dropped or self._is_stuck(s):
                continue
            due = sum(1 for t in job.due[len(job.results) :] if t <= now)
            self._finish_items(job, s, due, now)

    def _finish_items(self, job: FakeJob, s: FakeSession, n: int, now: float) -> None:
        for _ in range(n):
            item = job.items[len(job.results)]
            job.results.append(self._result(item, s, now))
        if n:
            s.last_activity_t = now
            s.phase = "navigating"
        if len(job.results) == len(job.items) and job.status == "running":
            self._end_job(s, "completed", now, None)

    def _end_job(
        self, s: FakeSession, status: str, now: float, error: dict[str, str] | None
    ) -> None:
        if s.job_id is None:
            return
        job = self.jobs[s.job_id]
        if job.status == "running":
            job.status, job.finished_t, job.error = status, now, error
        s.job_id = None
        s.phase = "idle"
        s.last_activity_t = now
        if s.status == "busy":
            s.status = "ready"

    # ------------------------------------------------------------ item outcomes
    def _result(self, item: dict[str, Any], s: FakeSession, now: float) -> dict[str, Any]:
        url: str = item["url"]
        code = self.fail_items.get(url) or self.fail_on_proxy.get(s.proxy_id or "", {}).get(url)
        http_status: int | None = None
        if code is None and s.proxy_id is not None and s.proxy_id in self.blocked_proxies:
            code, http_status = "blocked", 403
        if code is None:
            code, http_status = self._url_rule(url)
        result: dict[str, Any] = {
            "item_id": item["item_id"],
            "url": url,
            "status": "ok",
            "http_status": 200,
            "fetched_at": iso(now),
            "final_url": url,
            "data": None,
            "error": None,
        }
        if code is None:
            result["data"] = self.data_for(item) if self.data_for else default_data(item)
            return result
        if http_status is None:
            http_status = _ERROR_HTTP_STATUS.get(code)
        result.update(
            status="error",
            http_status=http_status,
            error={"code": code, "message": f"fake {code}"},
        )
        if self.snapshots and code in ("blocked", "http_error", "parse_error", "timeout"):
            result["snapshot"] = fake_snapshot(url, http_status, code)
        return result

    @staticmethod
    def _url_rule(url: str) -> tuple[str | None, int | None]:
        path = urlsplit(url).path
        m = _STATUS_RULE.search(path)
        if m:
            status = int(m.group(1))
            if status in (403, 429):
                return "blocked", status
            if status >= 400:
                return "http_error", status
        for marker, code in (
            ("/captcha", "blocked"),
            ("/timeout", "timeout"),
            ("/proxy-error", "proxy_error"),
            ("/dns-error", "dns_error"),
            ("/parse-error", "parse_error"),
        ):
            if marker in path:
                return code, (403 if code == "blocked" else None)
        return None, None

    # -------------------------------------------------------------- rendering
    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq}"

    def _session_body(self, s: FakeSession) -> dict[str, Any]:
        status = s.status
        if self._is_stuck(s) and self.stuck_status and status not in ("failed", "closed"):
            status = self.stuck_status
        return {
            "id": s.id,
            "session_key": s.session_key,
            "status": status,
            "phase": s.phase,
            "provider": s.provider,
            "engine": s.engine,
            "proxy_id": s.proxy_id,
            "job_id": s.job_id,
            "labels": s.labels,
            "created_at": iso(s.created_t),
            "last_activity_at": iso(s.last_activity_t),
            "error": s.error,
        }

    def _job_body(self, j: FakeJob) -> dict[str, Any]:
        return {
            "id": j.id,
            "job_key": j.job_key,
            "session_id": j.session_id,
            "status": j.status,
            "progress": {"total": len(j.items), "done": j.done, "failed": j.failed},
            "started_at": iso(j.started_t),
            "finished_at": None if j.finished_t is None else iso(j.finished_t),
            "error": j.error,
        }

    def _visible(self, s: FakeSession, now: float) -> bool:
        if s.dropped:
            return False
        return s.closed_t is None or now - s.closed_t <= self.retention_s

    def _session(self, session_id: str) -> FakeSession:
        s = self.sessions.get(session_id)
        if s is None or not self._visible(s, self.now()):
            raise ApiError(404, "session_not_found", f"no session {session_id}")
        return s

    def _job(self, job_id: str) -> FakeJob:
        j = self.jobs.get(job_id)
        if j is None or not self._visible(self.sessions[j.session_id], self.now()):
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        return j

    # ----------------------------------------------------------------- routes
    def _health(self, req: Request) -> Response:
        return Response(
            200,
            {
                "status": self.health_status,
                "version": self.version,
                "providers": self.providers,
                "capacity": {
                    "max_sessions": self.max_sessions,
                    "active_sessions": sum(1 for s in self.sessions.values() if s.active),
                },
            },
        )

    def _create_session(self, req: Request) -> Response:
        body = req.body
        if not isinstance(body, dict):
            raise invalid_request({"body": "must be a JSON object"})
        errors: dict[str, str] = {}
        key = body.get("session_key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors["session_key"] = "required: 1-128 characters of A-Za-z0-9._:-"
        provider = body.get("provider", "local")
        if provider not in self.providers:
            errors["provider"] = f"one of {', '.join(self.providers)}"
        engine = body.get("engine", "http")
        if engine not in ("http", "browser"):
            errors["engine"] = "http or browser"
        proxy = body.get("proxy")
        if proxy is not None and (
            not isinstance(proxy, dict)
            or not isinstance(proxy.get("id"), str)
            or not proxy.get("id")
        ):
            errors["proxy"] = "null or an object with a string id"
        timeout_s = body.get("timeout_s", 900)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s <= 0:
            errors["timeout_s"] = "a positive integer"
        labels = body.get("labels", {})
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            errors["labels"] = "an object"
        if errors:
            raise invalid_request(errors)
        assert isinstance(key, str)
        self.session_keys_seen.append(key)
        known = next((s for s in self.sessions.values() if s.session_key == key), None)
        if known is not None:
            self.duplicate_session_requests += 1
            return Response(200, self._session_body(known))
        proxy_id = proxy["id"] if proxy else None
        if self.provider_error_all or (
            proxy_id is not None and proxy_id in self.provider_error_for_proxies
        ):
            raise ApiError(
                502, "provider_error", f"provider could not start a browser with {proxy_id}"
            )
        if sum(1 for s in self.sessions.values() if s.active) >= self.max_sessions:
            raise ApiError(409, "capacity_exhausted", "no session slot is free")
        now = self.now()
        ready_t = now + self.ready_delay if math.isfinite(self.ready_delay) else math.inf
        s = FakeSession(
            id=self._next_id("s"),
            session_key=key,
            provider=provider,
            engine=engine,
            proxy=proxy,
            timeout_s=timeout_s,
            labels=labels,
            created_t=now,
            ready_t=ready_t,
            last_activity_t=now,
        )
        if self.ready_delay <= 0:
            s.status, s.phase = "ready", "idle"
        self.sessions[s.id] = s
        return Response(201, self._session_body(s))

    def _list_sessions(self, req: Request) -> Response:
        now = self.now()
        return Response(
            200,
            {
                "sessions": [
                    self._session_body(s) for s in self.sessions.values() if self._visible(s, now)
                ]
            },
        )

    def _get_session(self, req: Request) -> Response:
        return Response(200, self._session_body(self._session(req.params["id"])))

    def _delete_session(self, req: Request) -> Response:
        s = self.sessions.get(req.params["id"])
        if s is not None and not s.dropped and s.status != "closed":
            now = self.now()
            self._end_job(s, "cancelled", now, None)
            if s.status != "failed":
                s.status, s.closed_t = "closed", now
            s.phase = "idle"
        return Response(204)

    def _create_job(self, req: Request) -> Response:
        s = self._session(req.params["id"])
        body = req.body
        if not isinstance(body, dict):
            raise invalid_request({"body": "must be a JSON object"})
        errors: dict[str, str] = {}
        key = body.get("job_key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors["job_key"] = "required: 1-128 characters of A-Za-z0-9._:-"
        items = body.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= 1000:
            errors["items"] = "required: a list of 1-1000 items"
            items = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                errors[f"items[{i}]"] = "must be an object"
                continue
            item_id = item.get("item_id")
            if not isinstance(item_id, str) or not 1 <= len(item_id) <= 64:
                errors[f"items[{i}].item_id"] = "required: a string of 1-64 characters"
            elif item_id in seen:
                errors[f"items[{i}].item_id"] = "duplicate in this job"
            else:
                seen.add(item_id)
            url = item.get("url")
            split = urlsplit(url) if isinstance(url, str) else None
            if split is None or split.scheme not in ("http", "https") or not split.netloc:
                errors[f"items[{i}].url"] = "required: an absolute http or https URL"
        options = body.get("options", {})
        if options is None:
            options = {}
        if not isinstance(options, dict):
            errors["options"] = "an object"
        if errors:
            raise invalid_request(errors)
        assert isinstance(key, str)
        self.job_keys_seen.append(key)
        known = next((j for j in self.jobs.values() if j.job_key == key), None)
        if known is not None:
            self.duplicate_job_requests += 1
            return Response(200, self._job_body(known))
        if self._is_stuck(s) and s.job_id is not None:
            raise ApiError(409, "session_busy", "a job is running on this session")
        if s.status == "busy":
            raise ApiError(409, "session_busy", "a job is running on this session")
        if s.status != "ready" or self._is_stuck(s):
            raise ApiError(409, "session_not_ready", f"session is {s.status}")
        now = self.now()
        due: list[float] = []
        t = now
        for item in items:
            t += self.item_latency
            if "/slow" in urlsplit(item["url"]).path:
                t += self.slow_item_s
            due.append(t)
        job = FakeJob(
            id=self._next_id("j"),
            job_key=key,
            session_id=s.id,
            items=[{"item_id": it["item_id"], "url": it["url"]} for it in items],
            options=options,
            started_t=now,
            due=due,
        )
        self.jobs[job.id] = job
        s.status, s.phase, s.job_id, s.last_activity_t = "busy", "navigating", job.id, now
        if self.fail_sessions_on_job:
            self.fail_session(s.id, self.fail_sessions_on_job)
        return Response(202, self._job_body(job))

    def _get_job(self, req: Request) -> Response:
        return Response(200, self._job_body(self._job(req.params["id"])))

    def _results(self, req: Request) -> Response:
        job = self._job(req.params["id"])
        cursor = req.query.get("cursor") or None
        offset = 0 if cursor is None else decode_cursor(job.id, cursor)
        raw_limit = req.query.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise invalid_request({"limit": "an integer from 1 to 1000"})
        if offset > len(job.results):
            raise invalid_request({"cursor": "points past the results of this job"})
        page = job.results[offset : offset + int(raw_limit)]
        end = offset + len(page)
        next_cursor: str | None
        if job.finished and end == len(job.results):
            next_cursor = None
        elif not page:
            next_cursor = cursor if cursor is not None else encode_cursor(job.id, 0)
        else:
            next_cursor = encode_cursor(job.id, end)
        return Response(
            200, {"results": page, "next_cursor": next_cursor, "job_status": job.status}
        )


def default_data(item: dict[str, Any]) -> dict[str, Any]:
    """Deterministic extracted data for an ``ok`` item."""
    url: str = item["url"]
    return {"title": f"Page {item['item_id']}", "text_length": 100 * len(url), "links": len(url)}
