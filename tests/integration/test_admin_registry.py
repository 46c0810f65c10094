from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from registry.models import ConfigEntry, Proxy, SiteConfig, Uploader, Worker, Writer
from tests import factories

pytestmark = pytest.mark.django_db

KEY_CANARY = "canary-admin-key-3e1f"
PASS_CANARY = "canary-admin-pass-9b07"


@pytest.fixture
def admin_client_(db: None) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "senha-forte-123")
    client = Client()
    client.force_login(user)
    return client


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {KEY_CANARY}"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def worker_form(worker: Worker, **changes: Any) -> dict[str, Any]:
    data = {
        "name": worker.name,
        "base_url": worker.base_url,
        "api_key": "",
        "enabled": "on",
        "providers": '["local"]',
        "max_sessions": worker.max_sessions,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("model", "make"),
    [
        ("worker", lambda: factories.WorkerFactory.create(api_key=KEY_CANARY)),
        ("writer", lambda: factories.WriterFactory.create(api_key=KEY_CANARY)),
        ("uploader", lambda: factories.UploaderFactory.create(api_key=KEY_CANARY)),
        ("proxy", lambda: factories.ProxyFactory.create(password=PASS_CANARY)),
        ("siteconfig", lambda: factories.SiteConfigFactory.create(domain="loja.com.br")),
        ("configentry", lambda: factories.ConfigEntryFactory.create()),
    ],
)
def test_list_add_and_change_pages_render_without_secrets(
    model: str, make: Any, admin_client_: Client
) -> None:
    row = make()
    pages = [
        admin_client_.get(f"/admin/registry/{model}/"),
        admin_client_.get(f"/admin/registry/{model}/add/"),
        admin_client_.get(f"/admin/registry/{model}/{row.pk}/change/"),
        admin_client_.get(f"/admin/registry/{model}/?q=a"),
    ]

    for page in pages:
        assert page.status_code == 200
        body = page.content.decode()
        assert KEY_CANARY not in body
        assert PASS_CANARY not in body


def test_the_secret_input_is_a_password_field_that_renders_empty(admin_client_: Client) -> None:
    worker = factories.WorkerFactory.create(api_key=KEY_CANARY)

    page = admin_client_.get(f"/admin/registry/worker/{worker.pk}/change/")

    assert 'type="password" name="api_key"' in page.content.decode()


def test_a_blank_secret_keeps_the_stored_one(admin_client_: Client) -> None:
    worker = factories.WorkerFactory.create(api_key=KEY_CANARY, max_sessions=2)

    response = admin_client_.post(
        f"/admin/registry/worker/{worker.pk}/change/", worker_form(worker, max_sessions=5)
    )

    assert response.status_code == 302
    worker.refresh_from_db()
    assert (worker.max_sessions, worker.api_key) == (5, KEY_CANARY)


def test_a_new_secret_replaces_it_and_clear_removes_it(admin_client_: Client) -> None:
    worker = factories.WorkerFactory.create(api_key=KEY_CANARY)
    url = f"/admin/registry/worker/{worker.pk}/change/"

    admin_client_.post(url, worker_form(worker, api_key="nova-chave"))
    worker.refresh_from_db()
    assert worker.api_key == "nova-chave"

    admin_client_.post(url, worker_form(worker, clear_secret="on"))
    worker.refresh_from_db()
    assert worker.api_key == ""


def test_moving_a_service_requires_its_key_again(admin_client_: Client) -> None:
    worker = factories.WorkerFactory.create(api_key=KEY_CANARY)

    response = admin_client_.post(
        f"/admin/registry/worker/{worker.pk}/change/",
        worker_form(worker, base_url="http://outro-host:8000"),
    )

    assert response.status_code == 200
    assert "api_key" in response.context["adminform"].form.errors
    worker.refresh_from_db()
    assert worker.base_url != "http://outro-host:8000"


def test_a_blank_proxy_password_keeps_the_stored_one(admin_client_: Client) -> None:
    proxy = factories.ProxyFactory.create(password=PASS_CANARY)
    data = {
        "external_id": proxy.external_id,
        "type": "residential",
        "scheme": "http",
        "host": proxy.host,
        "port": proxy.port,
        "username": proxy.username,
        "password": "",
        "country": "BR",
        "enabled": "on",
        "status": "available",
        "max_sessions": 1,
    }
    url = f"/admin/registry/proxy/{proxy.pk}/change/"

    # A new address needs the password again: the stored one is not carried over.
    moved = admin_client_.post(url, {**data, "port": 9000})
    assert moved.status_code == 200
    assert "Informe o segredo de novo" in moved.content.decode()
    response = admin_client_.post(url, data)

    assert response.status_code == 302
    proxy.refresh_from_db()
    assert (proxy.type, proxy.port, proxy.password) == ("residential", 8000, PASS_CANARY)


@pytest.mark.parametrize(("action", "enabled"), [("enable", True), ("disable", False)])
def test_enable_and_disable_actions(action: str, enabled: bool, admin_client_: Client) -> None:
    proxies = [factories.ProxyFactory.create(enabled=not enabled) for _ in range(2)]
    configs = [
        factories.SiteConfigFactory.create(domain=f"s{n}.com", enabled=not enabled)
        for n in range(2)
    ]

    admin_client_.post(
        "/admin/registry/proxy/",
        {"action": action, "_selected_action": [p.pk for p in proxies]},
    )
    admin_client_.post(
        "/admin/registry/siteconfig/",
        {"action": action, "_selected_action": [c.pk for c in configs]},
    )

    assert Proxy.objects.filter(enabled=enabled).count() == 2
    assert SiteConfig.objects.filter(enabled=enabled).count() == 2


def test_the_test_connection_action_records_the_result(
    health_url: str, admin_client_: Client
) -> None:
    good = factories.WriterFactory.create(
        base_url=health_url, api_key=KEY_CANARY, health_status="unknown"
    )
    bad = factories.UploaderFactory.create(base_url=health_url, api_key="errada")

    first = admin_client_.post(
        "/admin/registry/writer/",
        {"action": "test_connection", "_selected_action": [good.pk]},
        follow=True,
    )
    admin_client_.post(
        "/admin/registry/uploader/", {"action": "test_connection", "_selected_action": [bad.pk]}
    )

    assert "OK (2xx" in first.content.decode()
    assert KEY_CANARY not in first.content.decode()
    assert Writer.objects.get(pk=good.pk).health_status == "ok"
    assert Uploader.objects.get(pk=bad.pk).health_status == "degraded"


def test_making_a_writer_default_in_admin_unsets_the_others(admin_client_: Client) -> None:
    old = factories.WriterFactory.create(is_default=True)
    new = factories.WriterFactory.create(api_key="")

    response = admin_client_.post(
        f"/admin/registry/writer/{new.pk}/change/",
        {
            "name": new.name,
            "base_url": new.base_url,
            "api_key": "",
            "enabled": "on",
            "is_default": "on",
            "max_batch_records": 500,
        },
    )

    assert response.status_code == 302
    assert list(Writer.objects.filter(is_default=True)) == [new]
    old.refresh_from_db()
    assert old.is_default is False


def test_config_entries_are_validated_by_their_key(admin_client_: Client) -> None:
    refused = admin_client_.post(
        "/admin/registry/configentry/add/", {"key": "max_retries", "value": "99"}
    )
    accepted = admin_client_.post(
        "/admin/registry/configentry/add/", {"key": "session_tick_s", "value": "2"}
    )

    assert refused.status_code == 200
    assert "value" in refused.context["adminform"].form.errors
    assert accepted.status_code == 302
    assert ConfigEntry.objects.get().value == 2.0


def test_machine_written_fields_are_read_only(admin_client_: Client) -> None:
    worker = factories.WorkerFactory.create(health_status="ok", active_sessions=3)
    data = worker_form(worker, health_status="offline", active_sessions=0)

    admin_client_.post(f"/admin/registry/worker/{worker.pk}/change/", data)

    worker.refresh_from_db()
    assert (worker.health_status, worker.active_sessions) == ("ok", 3)
