"""The one outbound policy (mission_control.outbound) on every path the server dials
for a user: webhook validation and delivery, and the built-in worker's HTTP engine
(each redirect hop). Production policy (OUTBOUND_ALLOW_PRIVATE off) over a table of
address forms, against servers on 127.0.0.1 only: none of them is ever reached."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

from localnode.engines import HttpEngine
from mission_control import outbound
from orchestrator import webhooks
from orchestrator.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

SECRET = "s" * 32


class _Server:
    def __init__(self, redirect_to: str = "") -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hits.append(self.path)
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"<html><title>internal page</title></html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def internal() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _production_policy(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    settings.OUTBOUND_ALLOWED_HOSTS = []


# Every way of writing "this machine" (the internal server listens on 127.0.0.1).
LOOPBACK_FORMS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0x7f.0.0.1",
    "0177.0.0.1",  # octal
    "127.1",
    "127.0.1",
    "localhost",  # a DNS name resolving to loopback
    "LOCALHOST.",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
]
# Forms that must be refused without ever being dialed (no server there).
OTHER_INTERNAL = [
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "[::ffff:169.254.169.254]",
    "metadata.google.internal",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "0.0.0.0",
    "[::]",
    "[::1]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64-embedded metadata
    "[2002:a9fe:a9fe::]",  # 6to4-embedded metadata
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS + OTHER_INTERNAL)
def test_the_policy_refuses_every_internal_form(host: str) -> None:
    with pytest.raises(outbound.Refused):
        outbound.check_url(f"http://{host}:8080/x")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pass@example.com/",
        "http:///nohost",
    ],
)
def test_the_policy_refuses_other_schemes_and_credentials(url: str) -> None:
    assert outbound.url_problem(url)
    with pytest.raises(outbound.Refused):
        outbound.check_url(url)


@pytest.mark.parametrize("host", LOOPBACK_FORMS + OTHER_INTERNAL)
def test_webhook_endpoints_to_internal_addresses_are_refused_by_the_api(
    host: str, admin_api: APIClient
) -> None:
    response = admin_api.post(
        "/api/webhooks/",
        {"name": "x", "url": f"http://{host}:9/h", "secret": SECRET, "events": ["*"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "url" in str(response.json())
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_webhook_deliveries_to_internal_addresses_never_leave(host: str, internal: _Server) -> None:
    # A row written before the policy (or by a name that resolved elsewhere then).
    endpoint = WebhookEndpoint.objects.create(
        name="old", url=f"http://{host}:{internal.port}/hook", secret=SECRET, events=["*"]
    )
    webhooks.send_test(endpoint)
    assert webhooks.deliver_due() == 1
    attempt = WebhookAttempt.objects.get()
    assert not attempt.ok and attempt.error.startswith("refused:")
    assert attempt.response_body == ""
    assert internal.hits == []


def test_webhooks_do_not_follow_redirects_and_named_hosts_are_reached(
    settings: Any, internal: _Server
) -> None:
    redirector = _Server(redirect_to=f"http://127.0.0.1:{internal.port}/secret")
    try:
        settings.OUTBOUND_ALLOWED_HOSTS = [f"127.0.0.1:{redirector.port}"]
        endpoint = WebhookEndpoint.objects.create(
            name="named",
            url=f"http://127.0.0.1:{redirector.port}/hook",
            secret=SECRET,
            events=["*"],
        )
        webhooks.send_test(endpoint)
        webhooks.deliver_due()
        attempt = WebhookAttempt.objects.get()
        assert attempt.status_code == 302 and not attempt.ok
        assert redirector.hits == ["/hook"] and internal.hits == []
    finally:
        redirector.close()


def test_viewers_never_read_what_a_webhook_receiver_answered(
    settings: Any, internal: _Server, viewer_api: APIClient, admin_api: APIClient
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True  # an admin's allowed internal receiver
    endpoint = WebhookEndpoint.objects.create(
        name="in", url=f"http://127.0.0.1:{internal.port}/h", secret=SECRET, events=["*"]
    )
    webhooks.send_test(endpoint)
    webhooks.deliver_due()
    delivery = WebhookDelivery.objects.get()
    seen = viewer_api.get(f"/api/webhook-deliveries/{delivery.pk}/").json()
    assert "internal page" not in str(seen)
    assert "internal page" in str(admin_api.get(f"/api/webhook-deliveries/{delivery.pk}/").json())


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_the_builtin_http_engine_refuses_internal_targets(host: str, internal: _Server) -> None:
    engine = HttpEngine()
    try:
        fetch = engine.fetch(f"http://{host}:{internal.port}/", timeout_s=5)
    finally:
        engine.close()
    assert fetch.error_code == "http_error" and "refused" in fetch.error_message
    assert internal.hits == []


def test_the_builtin_http_engine_checks_every_redirect_hop(
    settings: Any, internal: _Server
) -> None:
    # The first hop is allowed by name; its redirect to an internal page is not.
    redirector = _Server(redirect_to=f"http://localhost:{internal.port}/admin")
    try:
        settings.OUTBOUND_ALLOWED_HOSTS = [f"127.0.0.1:{redirector.port}"]
        engine = HttpEngine()
        try:
            fetch = engine.fetch(f"http://127.0.0.1:{redirector.port}/", timeout_s=5)
        finally:
            engine.close()
        assert redirector.hits == ["/"]
        assert internal.hits == []
        assert fetch.error_code == "http_error" and "refused" in fetch.error_message
    finally:
        redirector.close()


def test_the_transport_pins_the_address_it_checked(monkeypatch: Any, internal: _Server) -> None:
    """A name is resolved once; the connection goes to that address, Host keeps the name."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["Host"]))
        return httpx.Response(204)

    policy = outbound.Policy(allow_private=True)
    with outbound.guarded_client(policy=policy, transport=httpx.MockTransport(handler)) as c:
        c.get(f"http://localhost:{internal.port}/")
    assert seen == [("127.0.0.1", f"localhost:{internal.port}")] or seen[0][0] == "::1"


# --- smaller items of issue #18 (point 4/8): checked here, beside the policy tests.


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_role(make_api_client: Any, path: str) -> None:
    no_role = make_api_client("")
    assert no_role.get(path).status_code == 403
    assert make_api_client("viewer").get(path).status_code == 200


def test_service_urls_with_credentials_are_refused(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/workers/",
        {"name": "w", "base_url": "https://u:pw@w.example.com/api/v1"},
        format="json",
    )
    assert response.status_code == 400
    assert "base_url" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "1.1.1.1", "10.0.0.5"),  # no trusted proxy: the header is ignored
        (1, "6.6.6.6, 2.2.2.2", "2.2.2.2"),  # the proxy appended the client; 6.6.6.6 is forged
        (2, "6.6.6.6, 3.3.3.3, 10.0.0.9", "3.3.3.3"),
        (1, "", "10.0.0.5"),  # not through the proxy
        (1, "garbage", "10.0.0.5"),
    ],
)
def test_the_client_address_honours_trusted_proxy_count(
    settings: Any, count: int, forwarded: str, expected: str
) -> None:
    from django.test import RequestFactory

    from mission_control.clientip import client_ip

    settings.TRUSTED_PROXY_COUNT = count
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.parametrize("text", ["=HYPERLINK(1)", "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_export_cells_never_start_a_formula(text: str) -> None:
    from localnode.export import cell

    assert cell(text) == "'" + text
    assert cell("Produto 1") == "Produto 1" and cell(42) == 42


def test_the_process_tls_context_verifies_certificates_and_host_names() -> None:
    # Every client the server builds shares it: the engine's pooled clients and each
    # batch of webhook deliveries (tests/unit/test_clients_base.py, test_client_webhook.py).
    context = outbound.tls_context()
    assert context is outbound.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
