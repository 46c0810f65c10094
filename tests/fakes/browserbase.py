"""A fake Browserbase API (https://docs.browserbase.com/reference/api) on loopback.

Written from the public API reference: `POST /v1/sessions` (create), `GET /v1/sessions`
(list, `status` filter), `GET /v1/sessions/{id}`, `POST /v1/sessions/{id}` with
`{"status": "REQUEST_RELEASE"}` (release), `GET /v1/sessions/{id}/debug` (the live
inspector URLs: `debuggerFullscreenUrl`, `debuggerUrl`, `wsUrl`, `pages`); the key travels in `X-BB-API-Key`. Every
session's `connectUrl` is the DevTools WebSocket of one real Chromium started on
127.0.0.1 with `--remote-debugging-port`, so Playwright really connects over CDP.
"""

from __future__ import annotations

import hmac
import itertools
import shutil
import subprocess
import tempfile
import time
from email.message import Message
from pathlib import Path
from typing import Any

from tests.fakes.server import ApiError, FakeServer, Request, Response, iso

CHROMIUM = "/usr/bin/chromium"


class LocalChromium:
    """A headless Chromium listening for CDP on a free loopback port."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="fake-bb-chromium-"))
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ws_url = self._wait_for_port()

    def _wait_for_port(self) -> str:
        marker = self.profile / "DevToolsActivePort"
        for _ in range(600):  # a readiness poll, not a deadline on the code under test
            if marker.exists():
                lines = marker.read_text().split()
                if len(lines) >= 2:
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("Chromium did not open its DevTools port")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


class FakeBrowserbase(FakeServer):
    prefix = "/v1"

    def __init__(self, *, api_key: str, project_id: str, connect_url: str, **kwargs: Any):
        super().__init__(api_key=api_key, **kwargs)
        self.project_id = project_id
        self.connect_url = connect_url
        self.sessions: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # create bodies, in order
        self.released: list[str] = []  # ids, in order of release
        self.limit: int | None = None  # concurrent RUNNING sessions before 429
        self.refused = 0  # creates answered 429 because of `limit`
        self.fail_creates: list[int] = []  # statuses answered to the next creates
        self._ids = itertools.count(1)
        self.route("POST", "/sessions", self.create, body=True)
        self.route("GET", "/sessions", self.list)
        self.route("GET", "/sessions/{id}", self.retrieve)
        self.route("POST", "/sessions/{id}", self.update, body=True)
        self.route("GET", "/sessions/{id}/debug", self.debug)

    def check_auth(self, headers: Message) -> bool:
        got = headers.get("X-BB-API-Key", "")
        return hmac.compare_digest(got.encode(), (self.api_key or "").encode())

    @property
    def running(self) -> list[str]:
        with self.lock:
            return [i for i, s in self.sessions.items() if s["status"] == "RUNNING"]

    def _session(self, request: Request) -> dict[str, Any]:
        session = self.sessions.get(request.params["id"])
        if session is None:
            raise ApiError(404, "not_found", "Session not found")
        return session

    def create(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("projectId") != self.project_id:
            raise ApiError(400, "bad_request", "projectId does not match the key")
        if self.fail_creates:
            status = self.fail_creates.pop(0)
            raise ApiError(status, "injected_failure", "injected failure")
        if self.limit is not None and len(self.running) >= self.limit:
            self.refused += 1
            raise ApiError(429, "too_many_requests", "concurrency limit reached")
        now = iso(self.now())
        session_id = f"bb-{next(self._ids):04d}"
        session = {
            "id": session_id,
            "createdAt": now,
            "updatedAt": now,
            "startedAt": now,
            "expiresAt": iso(self.now() + float(body.get("timeout") or 300)),
            "endedAt": None,
            "projectId": self.project_id,
            "status": "RUNNING",
            "keepAlive": bool(body.get("keepAlive")),
            "proxyBytes": 0,
            "region": body.get("region") or "us-west-2",
            "userMetadata": body.get("userMetadata") or {},
            "proxies": body.get("proxies"),
        }
        self.sessions[session_id] = session
        self.created.append(body)
        answer = {
            **session,
            "connectUrl": self.connect_url,
            "seleniumRemoteUrl": "http://127.0.0.1:9/webdriver",
            "signingKey": f"signing-{session_id}",
        }
        return Response(201, answer)

    def list(self, request: Request) -> Response:
        wanted = request.query.get("status")
        rows = [s for s in self.sessions.values() if not wanted or s["status"] == wanted]
        return Response(200, rows)

    def retrieve(self, request: Request) -> Response:
        return Response(200, self._session(request))

    def debug(self, request: Request) -> Response:
        """The session's live inspector URLs (`SessionLiveURLs`)."""
        session = self._session(request)
        inspector = f"{self.root_url}/devtools/inspector.html?session={session['id']}"
        return Response(
            200,
            {
                "debuggerFullscreenUrl": f"{inspector}&fullscreen=1",
                "debuggerUrl": inspector,
                "wsUrl": self.connect_url,
                "pages": [],
            },
        )

    def update(self, request: Request) -> Response:
        session = self._session(request)
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("status") != "REQUEST_RELEASE":
            raise ApiError(400, "bad_request", "status must be REQUEST_RELEASE")
        if session["status"] == "RUNNING":
            session.update(status="COMPLETED", endedAt=iso(self.now()))
            self.released.append(session["id"])
        return Response(200, session)
