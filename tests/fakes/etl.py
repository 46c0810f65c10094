"""A fake ETL service (scrape runs) for docs/contracts/etl-api.md, over real HTTP on loopback.

Switches for the field-name variants the real service answers with:
- ``camel = True``: ``_id`` instead of ``id``, ``createdAt``/``updatedAt``, items carry
  ``runId`` (otherwise ``id``, ``created_at``, ``updated_at``, ``run_id``);
- ``list_wrapper``: ``None`` answers lists as ``[...]``, ``"runs"`` or ``"items"`` wraps
  them as ``{"runs": [...]}`` / ``{"items": [...]}``.
Fault switches come from ``FakeServer`` (``fail_next_requests``, ``hang_next``, ``down``,
...), plus ``throttle_next(n, retry_after)``: 429 with a ``Retry-After`` header.

Revised contract, strictly: item updates must carry ``id``, ``done`` (bool) and ``status``;
finalize must carry ``total``, ``done``, ``failed``, ``duration_s`` and a ``status`` of
``completed``/``failed``/``cancelled``. A POST or PATCH with an ``Idempotency-Key`` is
applied once: the same key with the same body replays the first answer (counted in
``replays``), with another body it is refused with 422 (``key_conflicts``).
``applied`` lists every (method, path, key) that changed state, so a test can prove no
step was applied twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.server import ApiError, FakeServer, Request, Response, invalid_request, iso

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINAL_STATUSES = ("completed", "failed", "cancelled")


@dataclass
class FakeRun:
    id: str
    seq: int
    domain: str
    status: str
    created_t: float
    updated_t: float
    items: list[dict[str, Any]] = field(default_factory=list)  # id, url, done, status, error
    stats: dict[str, Any] | None = None  # the finalize payload


class FakeEtl(FakeServer):
    prefix = "/etl/v1"

    def __init__(self, *, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.camel = False
        self.list_wrapper: str | None = None
        self.runs: dict[str, FakeRun] = {}
        self.item_updates: list[list[dict[str, Any]]] = []  # every PATCH body, in order
        self.finalized: dict[str, dict[str, Any]] = {}  # run id → finalize payload
        self.finalize_count: dict[str, int] = {}  # run id → finalizes applied
        self.applied: list[tuple[str, str, str]] = []  # (method, path, key) applied
        self.replays = 0
        self.key_conflicts: list[str] = []
        self._idem: dict[str, tuple[str, Response]] = {}
        self._throttle: list[float] = []
        self._seq = 0

        self.route("POST", "/scrape-runs", self._keyed(self._create), body=True)
        self.route("GET", "/scrape-runs", self._gated(self._list))
        self.route("GET", "/scrape-runs/{id}", self._gated(self._get))
        self.route("PATCH", "/scrape-runs/{id}/items", self._keyed(self._update_items), body=True)
        self.route("POST", "/scrape-runs/{id}/finalize", self._keyed(self._finalize), body=True)

    def throttle_next(self, n: int, retry_after: float) -> None:
        """The next ``n`` requests get 429 with ``Retry-After: retry_after``."""
        with self.lock:
            self._throttle.extend([retry_after] * n)

    def _gated(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def gated(req: Request) -> Response:
            if self._throttle:
                after = self._throttle.pop(0)
                self.faults_served["429"] += 1
                return Response(
                    429,
                    ApiError(429, "rate_limited", "slow down").body(),
                    {"Retry-After": str(int(after))},
                )
            return handler(req)

        return gated

    def _keyed(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Idempotency-Key: applied once; replayed for the same body, 422 for another."""

        def keyed(req: Request) -> Response:
            key = req.headers.get("Idempotency-Key") or ""
            body = json.dumps(req.body, sort_keys=True)
            if key and key in self._idem:
                seen_body, answer = self._idem[key]
                if seen_body != body:
                    self.key_conflicts.append(key)
                    raise ApiError(422, "idempotency_key_reused", "key reused for another body")
                self.replays += 1
                return answer
            answer = self._gated(handler)(req)
            if answer.status < 300:
                self.applied.append((req.method, req.path, key))
                if key:
                    self._idem[key] = (body, answer)
            return answer

        return keyed

    # ------------------------------------------------------------ test controls
    def add_run(
        self, domain: str, urls: list[str], *, status: str = "running", done: int = 0
    ) -> FakeRun:
        """Seed a run (e.g. an unfinished one to resume); its first ``done`` items are done."""
        with self.lock:
            run = self._new_run(domain, urls, status)
            for item in run.items[:done]:
                item.update(done=True, status="done")
            return run

    # --------------------------------------------------------------- rendering
    def _new_run(self, domain: str, urls: list[str], status: str = "pending") -> FakeRun:
        self._seq += 1
        now = self.now()
        run = FakeRun(f"run-{self._seq}", self._seq, domain, status, now, now)
        run.items = [
            {"id": f"{run.id}-i{n}", "url": url, "done": False, "status": "pending"}
            for n, url in enumerate(urls, start=1)
        ]
        self.runs[run.id] = run
        return run

    def _run_body(self, run: FakeRun, *, with_items: bool = True) -> dict[str, Any]:
        id_key, run_key = ("_id", "runId") if self.camel else ("id", "run_id")
        body: dict[str, Any] = {
            id_key: run.id,
            "domain": run.domain,
            "status": run.status,
            "createdAt" if self.camel else "created_at": iso(run.created_t),
            "updatedAt" if self.camel else "updated_at": iso(run.updated_t),
        }
        if with_items:
            body["items"] = [
                {
                    id_key: it["id"],
                    run_key: run.id,
                    "url": it["url"],
                    "done": it["done"],
                    "status": it["status"],
                    **({"error": it["error"]} if it.get("error") else {}),
                }
                for it in run.items
            ]
        return body

    def _run(self, run_id: str) -> FakeRun:
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, "run_not_found", f"no scrape run {run_id}")
        return run

    # ----------------------------------------------------------------- routes
    def _create(self, req: Request) -> Response:
        body = req.body
        if not isinstance(body, dict):
            raise invalid_request({"body": "must be a JSON object"})
        domain = body.get("domain")
        urls = body.get("urls") or []
        errors: dict[str, str] = {}
        if not isinstance(domain, str) or not domain:
            errors["domain"] = "required"
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            errors["urls"] = "a list of strings"
        if errors:
            raise invalid_request(errors)
        assert isinstance(domain, str)
        return Response(201, self._run_body(self._new_run(domain, urls)))

    def _get(self, req: Request) -> Response:
        return Response(200, self._run_body(self._run(req.params["id"])))

    def _list(self, req: Request) -> Response:
        runs = sorted(self.runs.values(), key=lambda r: (r.created_t, r.seq), reverse=True)
        if req.query.get("domain"):
            runs = [r for r in runs if r.domain == req.query["domain"]]
        if req.query.get("status"):
            runs = [r for r in runs if r.status == req.query["status"]]
        limit = req.query.get("limit")
        if limit:
            if not limit.isdigit() or int(limit) < 1:
                raise invalid_request({"limit": "a positive integer"})
            runs = runs[: int(limit)]
        listed = [self._run_body(r) for r in runs]
        if self.list_wrapper:
            return Response(200, {self.list_wrapper: listed})
        return Response(200, listed)

    def _update_items(self, req: Request) -> Response:
        run = self._run(req.params["id"])
        updates = req.body
        if not isinstance(updates, list) or not all(
            isinstance(u, dict)
            and isinstance(u.get("id") or u.get("_id"), str)
            and isinstance(u.get("done"), bool)
            and isinstance(u.get("status"), str)
            for u in updates
        ):
            raise invalid_request({"body": "a list of {id, done, status, error?}"})
        self.item_updates.append(updates)
        by_id = {it["id"]: it for it in run.items}
        updated = 0
        for u in updates:
            item = by_id.get(u.get("id") or u["_id"])
            if item is None:
                continue
            for name in ("done", "status", "error"):
                if name in u:
                    item[name] = u[name]
            updated += 1
        if run.status == "pending":
            run.status = "running"
        run.updated_t = self.now()
        return Response(200, {"updated": updated})

    def _finalize(self, req: Request) -> Response:
        run = self._run(req.params["id"])
        body = req.body
        if not isinstance(body, dict):
            raise invalid_request({"body": "must be a JSON object"})
        errors = {
            name: "a number"
            for name in ("total", "done", "failed", "duration_s")
            if not isinstance(body.get(name), int | float) or isinstance(body.get(name), bool)
        }
        if "status" in body and body["status"] not in FINAL_STATUSES:
            errors["status"] = "completed, failed or cancelled"
        if errors:
            raise invalid_request(errors)
        self.finalized[run.id] = body
        self.finalize_count[run.id] = self.finalize_count.get(run.id, 0) + 1
        run.stats = body
        run.status = body.get("status") or "completed"
        run.updated_t = self.now()
        return Response(200, self._run_body(run))
