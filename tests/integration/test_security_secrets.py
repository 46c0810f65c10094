"""A canary secret stored as a proxy password and as API keys never comes back out:
not in the API, the schema, the admin, the dashboard or a DEBUG log line. At rest it
is Fernet ciphertext under a key from the environment, and keys rotate."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.contrib import admin
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from mission_control import crypto
from mission_control.logging import JsonFormatter, RedactSecretsFilter
from orchestrator.clients.worker import WorkerClient
from registry import connection as conn
from registry.models import Proxy, Uploader, Worker, Writer
from tests import factories
from tests.integration.test_security_access import walk

pytestmark = pytest.mark.django_db

CANARY = "canary-Zx81q7-s3cr3t"
CANARY_KEY = "canary-key-Vb52k0"
CANARIES = (CANARY, CANARY_KEY)


def _body(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


def assert_clean(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for canary in CANARIES:
        assert canary not in text, f"canary leaked in {where}"


@pytest.fixture(autouse=True)
def _keys(settings: Any) -> Iterator[None]:
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def seeded(admin_api: APIClient) -> dict[str, Any]:
    """Secrets written through the API (and one through a factory), plus a session."""
    ids: dict[str, Any] = {}
    for kind in ("workers", "writers", "uploaders"):
        response = admin_api.post(
            f"/api/{kind}/",
            {
                "name": f"{kind}-canary",
                "base_url": "http://127.0.0.1:9/api/v1",
                "api_key": CANARY_KEY,
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        assert_clean(response.content, f"POST /api/{kind}/")
        ids[kind] = response.json()["id"]
    response = admin_api.post(
        "/api/proxies/",
        {
            "external_id": "px-canary",
            "type": "residential",
            "host": "127.0.0.1",
            "port": 9,
            "username": "cliente",
            "password": CANARY,
            "country": "BR",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert_clean(response.content, "POST /api/proxies/")
    ids["proxies"] = response.json()["id"]
    proxy = Proxy.objects.get(pk=ids["proxies"])
    worker = Worker.objects.get(pk=ids["workers"])
    mission = factories.MissionFactory(n_items=2)
    factories.BrowserSessionFactory(mission=mission, worker=worker, proxy=proxy)
    factories.MissionEventFactory(mission=mission, message=f"proxy {proxy.masked_url}")
    ids["missions"] = mission.pk
    return ids


def test_secrets_are_stored_encrypted_and_read_back(seeded: dict[str, Any]) -> None:
    with connection.cursor() as cursor:
        for table, column in (
            ("registry_worker", "api_key"),
            ("registry_writer", "api_key"),
            ("registry_uploader", "api_key"),
            ("registry_proxy", "password"),
        ):
            cursor.execute(f"SELECT {column} FROM {table}")
            stored = [row[0] for row in cursor.fetchall()]
            assert stored and all(v.startswith(crypto.PREFIX) for v in stored), table
            assert_clean(" ".join(stored), table)

    assert Worker.objects.get().api_key == CANARY_KEY
    assert Proxy.objects.get().password == CANARY
    assert Proxy.objects.get().url().startswith(f"http://cliente:{CANARY}@")


def test_every_api_read_and_the_schema_hide_the_canary(
    seeded: dict[str, Any], admin_api: APIClient
) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        url = re.sub(r"\{key\}", "max_retries", path)
        url = re.sub(r"\{\w+\}", str(seeded.get(path.split("/")[2], 1)), url)
        response = admin_api.get(url)
        assert response.status_code < 500, url
        assert_clean(_body(response), f"GET {url}")
    for kind in ("workers", "writers", "uploaders", "proxies"):
        response = admin_api.get(f"/api/{kind}/{seeded[kind]}/")
        assert response.status_code == 200
        assert_clean(response.content, f"GET /api/{kind}/id/")
    assert_clean(admin_api.get("/api/schema/").content, "/api/schema/")
    assert_clean(admin_api.get("/api/docs/").content, "/api/docs/")


def test_admin_pages_hide_the_canary(seeded: dict[str, Any], client: Client) -> None:
    superuser = factories.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(superuser)
    checked = 0
    for model in admin.site._registry:
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        response = client.get(base)
        assert response.status_code == 200, base
        assert_clean(response.content, base)
        for pk in model._default_manager.values_list("pk", flat=True)[:3]:
            for suffix in ("change/", "history/", "delete/"):
                response = client.get(f"{base}{pk}/{suffix}")
                assert response.status_code in (200, 302, 403), (base, suffix)
                assert_clean(response.content, f"{base}{pk}/{suffix}")
                checked += 1
    assert checked > 10


def test_dashboard_pages_hide_the_canary(seeded: dict[str, Any], client: Client) -> None:
    client.force_login(factories.UserFactory(role="admin"))
    dashboard = [
        p
        for p in walk(get_resolver().url_patterns)
        if not p.startswith(("api/", "admin/", "local/", "metrics", "healthz", "readyz"))
    ]
    pages = 0
    for path in dashboard:
        for kind in ("workers", "writers", "uploaders", "proxies"):
            url = "/" + path.replace("/x/", f"/{kind}/").replace("/1/", f"/{seeded[kind]}/")
            response = client.get(url)
            if response.status_code == 200:
                pages += 1
            assert_clean(response.content, f"GET {url}")
    assert pages > 10


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every logger at DEBUG (SQL included) into a handler configured like production's."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    root.addHandler(handler)
    forced = connection.force_debug_cursor
    connection.force_debug_cursor = True
    try:
        yield buffer
    finally:
        connection.force_debug_cursor = forced
        root.removeHandler(handler)
        for lg, level in levels:
            lg.setLevel(level)


def test_no_log_line_at_debug_carries_the_canary(
    debug_log: io.StringIO, admin_api: APIClient, seeded: dict[str, Any]
) -> None:
    # Reads, a key change, connection tests (refused, failing) and a client call.
    for kind in ("workers", "proxies"):
        admin_api.get(f"/api/{kind}/")
        admin_api.post(f"/api/{kind}/{seeded[kind]}/test-connection/")
    admin_api.patch(
        f"/api/workers/{seeded['workers']}/",
        {"base_url": "http://127.0.0.2:9/api/v1", "api_key": CANARY_KEY},
        format="json",
    )
    worker = Worker.objects.get(pk=seeded["workers"])
    worker.base_url = "http://169.254.169.254/latest"
    conn.check_service(worker)

    def refuse(request: httpx.Request) -> httpx.Response:
        logging.getLogger("test").debug("request headers: %s", dict(request.headers))
        return httpx.Response(401, json={"error": "unauthorized"})

    client = WorkerClient.for_worker(worker, transport=httpx.MockTransport(refuse))
    with pytest.raises(Exception):  # noqa: B017 - any domain error; the log is the point
        client.health()
    admin_api.get("/api/missions/")

    output = debug_log.getvalue()
    assert "SELECT" in output  # SQL was logged with its parameters
    assert_clean(output, "logs")


def test_the_key_rotates_and_old_rows_stay_readable(settings: Any, seeded: dict[str, Any]) -> None:
    old = settings.SECRETS_ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [new, old]
    assert Proxy.objects.get().password == CANARY

    call_command("rotate_secret_keys", stdout=io.StringIO())

    settings.SECRETS_ENCRYPTION_KEYS = [new]
    assert Proxy.objects.get().password == CANARY
    assert {w.api_key for w in (*Worker.objects.all(), *Writer.objects.all())} == {CANARY_KEY}
    assert Uploader.objects.get().api_key == CANARY_KEY
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    with pytest.raises(crypto.SecretDecryptionError) as exc:
        Proxy.objects.get()
    assert CANARY not in str(exc.value)


def test_plaintext_rows_from_before_encryption_read_and_get_encrypted() -> None:
    worker = factories.WorkerFactory(api_key="")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE registry_worker SET api_key = %s WHERE id = %s", [CANARY_KEY, worker.pk]
        )
    assert Worker.objects.get(pk=worker.pk).api_key == CANARY_KEY

    call_command("rotate_secret_keys", stdout=io.StringIO())

    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM registry_worker WHERE id = %s", [worker.pk])
        assert cursor.fetchone()[0].startswith(crypto.PREFIX)
    assert Worker.objects.get(pk=worker.pk).api_key == CANARY_KEY


def test_an_empty_secret_stays_empty_and_means_none_set() -> None:
    worker = factories.WorkerFactory(api_key="")
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM registry_worker WHERE id = %s", [worker.pk])
        assert cursor.fetchone()[0] == ""
    assert not Worker.objects.get(pk=worker.pk).has_api_key


def test_changing_base_url_requires_the_key_again_in_the_api(
    admin_api: APIClient, seeded: dict[str, Any]
) -> None:
    url = f"/api/workers/{seeded['workers']}/"
    moved = admin_api.patch(url, {"base_url": "http://127.0.0.3:9/api/v1"}, format="json")

    assert moved.status_code == 400
    assert "api_key" in moved.json()["error"]["fields"]
    assert Worker.objects.get().base_url == "http://127.0.0.1:9/api/v1"
    ok = admin_api.patch(
        url, {"base_url": "http://127.0.0.3:9/api/v1", "api_key": CANARY_KEY}, format="json"
    )
    assert ok.status_code == 200


def test_changing_base_url_requires_the_key_again_in_the_admin(
    client: Client, seeded: dict[str, Any]
) -> None:
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    worker = Worker.objects.get()
    response = client.post(
        f"/admin/registry/worker/{worker.pk}/change/",
        {
            "name": worker.name,
            "base_url": "http://127.0.0.3:9/api/v1",
            "api_key": "",
            "enabled": "on",
            "max_sessions": 8,
            "providers": "[]",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert Worker.objects.get().base_url == "http://127.0.0.1:9/api/v1"
    assert_clean(response.content, "admin change form")


def test_a_secret_that_looks_like_ciphertext_is_still_just_a_secret() -> None:
    proxy = factories.ProxyFactory(password="fernet:not-a-token")

    assert Proxy.objects.get(pk=proxy.pk).password == "fernet:not-a-token"


def test_serialized_rows_carry_ciphertext_and_load_back(seeded: dict[str, Any]) -> None:
    out = io.StringIO()
    call_command("dumpdata", "registry.proxy", "registry.worker", stdout=out)
    assert_clean(out.getvalue(), "dumpdata")

    from django.core import serializers

    objects = list(serializers.deserialize("json", out.getvalue()))
    passwords = [o.object.password for o in objects if isinstance(o.object, Proxy)]
    assert passwords == [CANARY]


def test_changing_base_url_requires_the_key_again_in_the_dashboard(
    client: Client, seeded: dict[str, Any]
) -> None:
    client.force_login(factories.UserFactory(role="admin"))
    worker = Worker.objects.get()
    form = {"name": worker.name, "base_url": "http://127.0.0.3:9/api/v1", "max_sessions": 8}

    refused = client.post(f"/recursos/workers/{worker.pk}/editar/", {**form, "api_key": ""})

    assert refused.status_code == 200  # the form again, with the error
    assert "de novo" in refused.content.decode()
    assert Worker.objects.get().base_url == "http://127.0.0.1:9/api/v1"
    assert_clean(refused.content, "dashboard form")
    client.post(f"/recursos/workers/{worker.pk}/editar/", {**form, "api_key": CANARY_KEY})
    assert Worker.objects.get().base_url == "http://127.0.0.3:9/api/v1"
    assert Worker.objects.get().api_key == CANARY_KEY


def test_a_secret_read_again_is_decrypted_once_per_key_set(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = crypto.encrypt("s3cret-token")
    calls: list[bytes] = []
    real = MultiFernet.decrypt

    def counted(self: MultiFernet, token: bytes, *args: Any) -> bytes:
        calls.append(token)
        return real(self, token, *args)

    monkeypatch.setattr(MultiFernet, "decrypt", counted)
    assert [crypto.decrypt(stored) for _ in range(3)] == ["s3cret-token"] * 3
    assert len(calls) == 1
    # Another key set decides again (and here fails): a cached plaintext never
    # outlives the key that opened it.
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.SecretDecryptionError):
        crypto.decrypt(stored)
    assert len(calls) == 2
