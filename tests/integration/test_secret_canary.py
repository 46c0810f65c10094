"""Canary secrets: written through the API (webhook secret, worker key, proxy password)
and the built-in worker (a session's proxy URL with a password), then looked for in
every text column of every table, in `dumpdata`, in the API's and the admin's answers
and in the logs. Found nowhere in the clear."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, models
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from localnode import worker_api
from localnode.models import LocalSession
from orchestrator.models import WebhookEndpoint
from registry.models import Proxy, Worker

pytestmark = pytest.mark.django_db

CANARIES = {
    "webhook": "canary-webhook-7f3e9a1c2b4d",
    "worker": "canary-worker-key-5a6b7c8d9e",
    "proxy": "canary-proxy-pw-1q2w3e4r5t",
    "session": "canary-session-pw-9o8i7u6y",
}


def _text_columns() -> list[tuple[str, str]]:
    columns = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, models.CharField | models.TextField | models.JSONField):
                columns.append((model._meta.db_table, field.column))
    return columns


def _plaintext_in_database() -> list[str]:
    found = []
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, column in _text_columns():
            cursor.execute(f"SELECT {qn(column)} FROM {qn(table)}")
            for (value,) in cursor.fetchall():
                text = str(value)
                found += [f"{table}.{column}" for c in CANARIES.values() if c in text]
    return found


@pytest.fixture
def stored(admin_api: APIClient) -> dict[str, int]:
    hook = admin_api.post(
        "/api/webhooks/",
        {
            "name": "ops",
            "url": "https://hooks.example.com/in",
            "secret": CANARIES["webhook"],
            "events": ["*"],
        },
        format="json",
    )
    assert hook.status_code == 201, hook.content
    worker = admin_api.post(
        "/api/workers/",
        {"name": "w1", "base_url": "https://w1.example.com/api/v1", "api_key": CANARIES["worker"]},
        format="json",
    )
    assert worker.status_code == 201, worker.content
    proxy = admin_api.post(
        "/api/proxies/",
        {
            "external_id": "px-canary",
            "type": "datacenter",
            "scheme": "http",
            "host": "203.0.113.9",
            "port": 8080,
            "username": "u",
            "password": CANARIES["proxy"],
        },
        format="json",
    )
    assert proxy.status_code == 201, proxy.content
    session, _ = worker_api.create_session(
        worker_api.validate_session_request(
            {
                "session_key": "canary-s",
                "proxy": {"id": "px", "url": f"http://u:{CANARIES['session']}@203.0.113.9:8080"},
            }
        ),
        timezone.now(),
    )
    return {
        "webhook": hook.json()["id"],
        "worker": worker.json()["id"],
        "proxy": proxy.json()["id"],
        "session": session.pk,
    }


def test_the_secrets_are_usable_in_python(stored: dict[str, int]) -> None:
    assert WebhookEndpoint.objects.get(pk=stored["webhook"]).secret == CANARIES["webhook"]
    assert Worker.objects.get(pk=stored["worker"]).api_key == CANARIES["worker"]
    assert Proxy.objects.get(pk=stored["proxy"]).password == CANARIES["proxy"]
    assert CANARIES["session"] in LocalSession.objects.get(pk=stored["session"]).proxy_url


def test_no_table_holds_a_secret_in_the_clear(stored: dict[str, int]) -> None:
    assert _plaintext_in_database() == []


def test_dumpdata_writes_no_secret_in_the_clear(stored: dict[str, int]) -> None:
    out = io.StringIO()
    call_command("dumpdata", "orchestrator", "registry", "localnode", stdout=out)
    dump = out.getvalue()
    assert "px-canary" in dump  # the rows are there
    assert [name for name, c in CANARIES.items() if c in dump] == []


def test_no_answer_and_no_log_line_shows_a_secret(
    stored: dict[str, int], admin_api: APIClient, viewer_api: APIClient, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = Client()
    admin.force_login(admin_api.user)  # type: ignore[attr-defined]
    admin_api.user.is_staff = admin_api.user.is_superuser = True  # type: ignore[attr-defined]
    admin_api.user.save()  # type: ignore[attr-defined]
    pages = [
        (admin_api, "/api/webhooks/"),
        (admin_api, f"/api/webhooks/{stored['webhook']}/"),
        (viewer_api, "/api/webhooks/"),
        (admin_api, "/api/workers/"),
        (admin_api, f"/api/workers/{stored['worker']}/"),
        (viewer_api, "/api/workers/"),
        (admin_api, "/api/proxies/"),
        (admin_api, f"/api/proxies/{stored['proxy']}/"),
        (admin, f"/admin/orchestrator/webhookendpoint/{stored['webhook']}/change/"),
        (admin, f"/admin/registry/worker/{stored['worker']}/change/"),
        (admin, f"/admin/registry/proxy/{stored['proxy']}/change/"),
        (admin, "/admin/localnode/localsession/"),
        (admin, "/workers/"),
        (admin, "/proxies/"),
        (admin, "/webhooks/"),
    ]
    seen = 0
    for client, path in pages:
        response = client.get(path)
        if response.status_code == 404:
            continue  # a page this build does not have
        assert response.status_code == 200, (path, response.status_code)
        seen += 1
        body = response.content.decode()
        assert [n for n, c in CANARIES.items() if c in body] == [], path
    assert seen >= 10
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert [n for n, c in CANARIES.items() if c in logged] == []
