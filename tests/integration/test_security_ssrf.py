""" "Testar conexão" cannot be turned into SSRF (beyond tests/integration/
test_connection.py): every encoding of metadata and link-local addresses is refused,
private ranges need an allow-list, the address checked is the one connected, the
caller learns only ok/fail, status class and latency, and every test is audit-logged,
admin-only and rate-limited whatever the entry point."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditLog
from registry import connection
from registry.models import Worker
from tests import factories

pytestmark = pytest.mark.django_db


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> Iterator[None]:
    settings.OUTBOUND_ALLOW_PRIVATE = True
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    cache.clear()
    yield
    cache.clear()


METADATA_FORMS = [
    "169.254.169.254",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:a9fe:a9fe",
    "::169.254.169.254",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::1",  # 6to4
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "192.0.0.192",
]


@pytest.mark.parametrize("address", METADATA_FORMS)
def test_metadata_and_link_local_are_refused_even_when_private_is_allowed(address: str) -> None:
    with pytest.raises(connection.TargetRefused):
        connection.check_address(
            ipaddress.ip_address(address),
            allow_private=True,
            allowed_networks=[ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")],
        )


@pytest.mark.parametrize(
    "host", ["2852039166", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518"]
)
def test_numeric_forms_resolve_to_what_they_are(host: str) -> None:
    with pytest.raises(connection.TargetRefused):
        connection.resolve(host, 80, allow_private=True)


def test_private_ranges_need_the_switch_or_an_allow_listed_network(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    with pytest.raises(connection.TargetRefused, match="private or loopback"):
        connection.resolve("10.1.2.3", 80, allow_private=False)

    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    assert str(connection.resolve("10.1.2.3", 80, allow_private=False)) == "10.1.2.3"
    with pytest.raises(connection.TargetRefused):
        connection.resolve("10.2.0.1", 80, allow_private=False)
    settings.OUTBOUND_ALLOWED_NETWORKS = ["169.254.0.0/16"]
    with pytest.raises(connection.TargetRefused, match="link-local"):
        connection.resolve("169.254.169.254", 80, allow_private=False)


def test_it_connects_to_the_address_it_checked(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name answering a safe address first and metadata later still
    reaches only the address that was checked."""
    port = int(service.rsplit(":", 1)[1])
    answers = iter(["127.0.0.1", "169.254.169.254", "169.254.169.254"])
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            ip = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    worker = factories.WorkerFactory(base_url=f"http://rebind.test:{port}", api_key="")

    result = connection.check_service(worker)

    assert result.ok, result
    assert next(answers) == "169.254.169.254"  # resolved once, not again by the client


def test_the_caller_learns_only_a_coarse_reason(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    hidden = factories.WorkerFactory(base_url="http://10.9.8.7:8000", api_key="")
    unresolvable = factories.WorkerFactory(base_url="http://no-such-host.invalid", api_key="")
    settings.OUTBOUND_ALLOW_PRIVATE = True
    closed = factories.WorkerFactory(base_url=f"http://127.0.0.1:{_unused_port()}", api_key="")

    settings.OUTBOUND_ALLOW_PRIVATE = False
    refused = connection.check_service(hidden)
    unknown = connection.check_service(unresolvable)
    settings.OUTBOUND_ALLOW_PRIVATE = True
    failed = connection.check_service(closed)

    assert refused.error == "refused: private or loopback address"
    assert unknown.error == "refused: cannot resolve host"
    assert failed.error == "connection failed"
    for result in (refused, unknown, failed):
        assert result.status_class is None
        assert "10.9.8.7" not in result.error and "Errno" not in result.error


def test_every_test_is_audit_logged_with_the_actor_and_outcome_only(
    service: str, admin_api: APIClient
) -> None:
    worker = factories.WorkerFactory(base_url=service, api_key="k-123456")

    response = admin_api.post(f"/api/workers/{worker.pk}/test-connection/")

    assert response.json()["ok"] is True
    entry = AuditLog.objects.get(action=AuditLog.Action.CONNECTION_TEST)
    assert entry.actor == admin_api.user.username
    assert (entry.model, entry.object_id) == ("registry.worker", str(worker.pk))
    assert set(entry.data) == {"ok", "status_class", "latency_ms", "refused"}
    assert entry.data["ok"] is True and entry.data["status_class"] == "2xx"
    assert "k-123456" not in str(entry.data) + entry.object_repr


def test_refused_targets_are_audit_logged_as_refused(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory(base_url="http://169.254.169.254/", api_key="")

    admin_api.post(f"/api/workers/{worker.pk}/test-connection/")

    assert AuditLog.objects.get(action=AuditLog.Action.CONNECTION_TEST).data["refused"] is True


def _admin_client(role: str = "admin", **extra: Any) -> Client:
    client = Client()
    client.force_login(factories.UserFactory(role=role, **extra))
    return client


def test_the_admin_action_is_rate_limited_per_user(service: str, settings: Any) -> None:
    settings.CONNECTION_TEST_RATE = "3/min"
    worker = factories.WorkerFactory(base_url=service, api_key="")
    client = _admin_client(is_staff=True, is_superuser=True)
    post = {"action": "test_connection", "_selected_action": [worker.pk]}

    for _ in range(5):
        client.post("/admin/registry/worker/", post)

    outcomes = list(
        AuditLog.objects.filter(action=AuditLog.Action.CONNECTION_TEST)
        .order_by("id")
        .values_list("data__ok", flat=True)
    )
    assert outcomes == [True, True, True, False, False]
    assert Worker.objects.get().last_checked_at is not None


def test_the_dashboard_shares_the_rate_limit(service: str, settings: Any) -> None:
    settings.CONNECTION_TEST_RATE = "2/min"
    worker = factories.WorkerFactory(base_url=service, api_key="")
    client = _admin_client()

    pages = [client.post(f"/recursos/workers/{worker.pk}/testar/") for _ in range(3)]

    assert [p.status_code for p in pages] == [200, 200, 200]
    assert "rate limited" in pages[2].content.decode()
    assert "rate limited" not in pages[1].content.decode()


def test_a_staff_user_without_the_admin_role_cannot_test_from_the_admin(service: str) -> None:
    from django.contrib.auth.models import Permission

    worker = factories.WorkerFactory(base_url=service, api_key="")
    viewer = factories.UserFactory(role="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client = Client()
    client.force_login(viewer)

    client.post(
        "/admin/registry/worker/", {"action": "test_connection", "_selected_action": [worker.pk]}
    )

    assert Worker.objects.get().last_checked_at is None
    entry = AuditLog.objects.get(action=AuditLog.Action.CONNECTION_TEST)
    assert entry.data["refused"] is True and entry.actor == viewer.username


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
