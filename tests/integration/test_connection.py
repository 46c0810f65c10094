"""Connection tests against real HTTP servers (and a forward proxy) on loopback."""

from __future__ import annotations

import base64
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from registry import connection
from registry.models import Proxy, Worker
from tests import factories

pytestmark = pytest.mark.django_db

KEY = "canary-key-91c4e7"
PROXY_USER, PROXY_PASS = "cliente", "canary-pass-5d2a0f"


class Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.hits: list[str] = []
        self.httpd.hits = self.hits  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ServiceHandler(BaseHTTPRequestHandler):
    """Speaks the /health contract: 200 with the right bearer key, else 401."""

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        if self.path.startswith("/broken"):
            self.send_response(503)
            self.end_headers()
            return
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ForwardProxyHandler(BaseHTTPRequestHandler):
    """A tiny forward proxy: checks Basic credentials, relays absolute-form GETs."""

    def do_GET(self) -> None:
        expected = base64.b64encode(f"{PROXY_USER}:{PROXY_PASS}".encode()).decode()
        if self.headers.get("Proxy-Authorization") != f"Basic {expected}":
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
            self.end_headers()
            return
        target = urlsplit(self.path)
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        upstream = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=5)
        upstream.request("GET", target.path or "/", headers={"Authorization": f"Bearer {KEY}"})
        reply = upstream.getresponse()
        body = reply.read()
        self.send_response(reply.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def service() -> Iterator[Server]:
    server = Server(ServiceHandler)
    yield server
    server.close()


@pytest.fixture
def forward_proxy() -> Iterator[Server]:
    server = Server(ForwardProxyHandler)
    yield server
    server.close()


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- services -----------------------------------------------------------------------


def test_it_checks_health_with_the_bearer_key_and_records_it(service: Server) -> None:
    worker = factories.WorkerFactory.create(
        base_url=f"{service.url}/api/v1", api_key=KEY, health_status="unknown", last_error="old"
    )

    result = connection.check_service(worker)

    assert (result.ok, result.status_class, result.error) == (True, "2xx", "")
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert service.hits == ["/api/v1/health"]
    worker.refresh_from_db()
    assert worker.health_status == "ok"
    assert worker.last_error == ""
    assert worker.last_checked_at is not None
    assert worker.last_seen_at is not None
    assert worker.last_latency_ms == result.latency_ms


def test_a_refused_key_marks_the_service_degraded(service: Server) -> None:
    worker = factories.WorkerFactory.create(base_url=service.url, api_key="wrong-" + KEY)

    result = connection.check_service(worker)

    assert (result.ok, result.status_class) == (False, "4xx")
    assert KEY not in result.error
    worker.refresh_from_db()
    assert worker.health_status == "degraded"
    assert worker.last_error == "HTTP 401"


def test_a_503_marks_the_service_degraded(service: Server) -> None:
    writer = factories.WriterFactory.create(base_url=f"{service.url}/broken", api_key=KEY)

    result = connection.check_service(writer)

    assert result.status_class == "5xx"
    writer.refresh_from_db()
    assert writer.health_status == "degraded"


def test_an_unreachable_service_is_offline_and_the_error_has_no_secret() -> None:
    worker = factories.WorkerFactory.create(
        base_url=f"http://127.0.0.1:{unused_port()}", api_key=KEY
    )

    result = connection.check_service(worker)

    assert result.ok is False
    assert result.status_class is None
    assert result.error
    assert KEY not in result.error
    worker.refresh_from_db()
    assert worker.health_status == "offline"
    assert KEY not in worker.last_error


def test_it_never_follows_redirects(service: Server) -> None:
    worker = factories.WorkerFactory.create(base_url=f"{service.url}/moved", api_key=KEY)

    result = connection.check_service(worker)

    assert (result.ok, result.status_class) == (False, "3xx")
    assert "redirect" in result.error
    assert service.hits == ["/moved/health"]


def test_it_gives_up_at_the_total_deadline(service: Server) -> None:
    worker = factories.WorkerFactory.create(base_url=f"{service.url}/slow", api_key=KEY)

    result = connection.check_service(worker, deadline_s=0.3)

    # The service answers after 1.5 s: an answer here would mean the call waited for it.
    assert result.ok is False
    assert "deadline" in result.error
    assert result.latency_ms == 300


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://2852039166/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://0.0.0.0:8000/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "http:///nohost",
    ],
)
def test_it_refuses_link_local_metadata_and_odd_targets(base_url: str) -> None:
    worker = factories.WorkerFactory.create(base_url=base_url, api_key=KEY, health_status="ok")

    result = connection.check_service(worker)

    assert result.ok is False
    assert result.error.startswith("refused")
    assert result.status_class is None
    worker.refresh_from_db()
    assert worker.health_status == "offline"
    assert worker.last_error.startswith("refused")


def test_it_refuses_loopback_unless_private_targets_are_allowed(
    service: Server, settings: Any
) -> None:
    worker = factories.WorkerFactory.create(base_url=service.url, api_key=KEY)

    settings.OUTBOUND_ALLOW_PRIVATE = False
    refused = connection.check_service(worker)
    settings.OUTBOUND_ALLOW_PRIVATE = True
    allowed = connection.check_service(worker)

    assert refused.error.startswith("refused")
    assert "private or loopback" in refused.error
    assert allowed.ok is True
    assert service.hits == ["/health"]


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "192.168.1.1", "::1", "::ffff:127.0.0.1", "2002:7f00:1::1"],
)
def test_private_addresses_are_refused_when_not_allowed(address: str) -> None:
    import ipaddress

    with pytest.raises(connection.TargetRefused):
        connection.check_address(ipaddress.ip_address(address), allow_private=False)
    connection.check_address(ipaddress.ip_address(address), allow_private=True)


# -- the API ------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["workers", "writers", "uploaders"])
def test_the_endpoint_answers_only_the_outcome(
    resource: str, service: Server, admin_api: APIClient
) -> None:
    factory = {
        "workers": factories.WorkerFactory,
        "writers": factories.WriterFactory,
        "uploaders": factories.UploaderFactory,
    }[resource]
    row = factory.create(base_url=service.url, api_key=KEY)

    response = admin_api.post(f"/api/{resource}/{row.pk}/test-connection/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ok", "status_class", "latency_ms"}
    assert (body["ok"], body["status_class"]) == (True, "2xx")
    assert KEY not in response.content.decode()


def test_the_endpoint_reports_failures_without_secrets(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(
        base_url=f"http://user:{KEY}@127.0.0.1:{unused_port()}", api_key=KEY
    )

    response = admin_api.post(f"/api/workers/{worker.pk}/test-connection/")

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["error"]
    assert KEY not in response.content.decode()


def test_the_endpoint_reports_a_refusal(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(base_url="http://169.254.169.254/", api_key=KEY)

    response = admin_api.post(f"/api/workers/{worker.pk}/test-connection/")

    assert response.status_code == 200
    assert response.json()["error"].startswith("refused")


def test_only_admins_may_test_connections(
    service: Server, viewer_api: APIClient, operator_api: APIClient, anon_api: APIClient
) -> None:
    worker = factories.WorkerFactory.create(base_url=service.url, api_key=KEY)
    url = f"/api/workers/{worker.pk}/test-connection/"

    assert anon_api.post(url).status_code == 401
    assert viewer_api.post(url).status_code == 403
    assert operator_api.post(url).status_code == 403
    assert service.hits == []


def test_the_endpoint_is_throttled(
    service: Server, admin_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rest_framework.throttling import ScopedRateThrottle

    # The rates are read once at import; lower the connection_test one for this test.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"connection_test": "2/min"})
    worker = factories.WorkerFactory.create(base_url=service.url, api_key=KEY)

    codes = [
        admin_api.post(f"/api/workers/{worker.pk}/test-connection/").status_code for _ in range(3)
    ]

    assert codes == [200, 200, 429]
    assert service.hits == ["/health", "/health"]


def test_the_endpoint_answers_404_for_an_unknown_row(admin_api: APIClient) -> None:
    assert admin_api.post("/api/proxies/424242/test-connection/").status_code == 404


# -- proxies ------------------------------------------------------------------------


def test_it_checks_a_proxy_through_the_proxy(
    service: Server, forward_proxy: Server, settings: Any, admin_api: APIClient
) -> None:
    settings.PROXY_CHECK_URL = f"{service.url}/ip"
    proxy = factories.ProxyFactory.create(
        host="127.0.0.1", port=forward_proxy.port, username=PROXY_USER, password=PROXY_PASS
    )

    response = admin_api.post(f"/api/proxies/{proxy.pk}/test-connection/")

    assert response.json() == {
        "ok": True,
        "status_class": "2xx",
        "latency_ms": response.json()["latency_ms"],
    }
    assert forward_proxy.hits == [f"{service.url}/ip"]
    assert service.hits == ["/ip"]
    proxy.refresh_from_db()
    assert (proxy.success_count, proxy.failure_count, proxy.last_error) == (1, 0, "")
    assert proxy.last_checked_at is not None
    assert PROXY_PASS not in response.content.decode()


def test_a_proxy_refusing_the_credentials_counts_a_failure(
    service: Server, forward_proxy: Server, settings: Any
) -> None:
    settings.PROXY_CHECK_URL = f"{service.url}/ip"
    proxy = factories.ProxyFactory.create(
        host="127.0.0.1",
        port=forward_proxy.port,
        username=PROXY_USER,
        password="wrong-" + PROXY_PASS,
    )

    result = connection.check_proxy(proxy)

    assert (result.ok, result.status_class) == (False, "4xx")
    assert PROXY_PASS not in result.error
    assert service.hits == []
    proxy.refresh_from_db()
    assert (proxy.success_count, proxy.failure_count) == (0, 1)


def test_an_unreachable_proxy_counts_a_failure_without_leaking_the_password(
    settings: Any,
) -> None:
    settings.PROXY_CHECK_URL = "http://127.0.0.1:9/ip"
    proxy = factories.ProxyFactory.create(
        host="127.0.0.1", port=unused_port(), username=PROXY_USER, password=PROXY_PASS
    )

    result = connection.check_proxy(proxy)

    assert result.ok is False
    assert result.error
    assert PROXY_PASS not in result.error
    proxy.refresh_from_db()
    assert proxy.failure_count == 1
    assert PROXY_PASS not in proxy.last_error


@pytest.mark.parametrize("host", ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254"])
def test_it_refuses_a_link_local_proxy(host: str) -> None:
    proxy = factories.ProxyFactory.create(host=host, port=3128)

    result = connection.check_proxy(proxy)

    assert result.error.startswith("refused")
    assert Proxy.objects.get(pk=proxy.pk).failure_count == 1


def test_the_worker_row_is_not_changed_by_a_viewer(service: Server, viewer_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(
        base_url=service.url, api_key=KEY, health_status="unknown"
    )

    viewer_api.post(f"/api/workers/{worker.pk}/test-connection/")

    assert Worker.objects.get(pk=worker.pk).health_status == "unknown"
