"""Deployment security: `check --deploy` is clean with production settings and
nothing silenced, headers are set, CSRF guards session writes, logins are throttled
(django-axes) on the admin, the dashboard and the token endpoint, and the API docs
are not public."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from registry.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "senha-forte-123"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "mc.example.com",
        "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LOCALNODE_API_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
    }


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 silenced" in result.stdout + result.stderr


@pytest.mark.slow
def test_check_deploy_flags_a_missing_encryption_key(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["SECRETS_ENCRYPTION_KEYS"]
    env["OUTBOUND_ALLOW_PRIVATE"] = "true"
    del env["LOCALNODE_API_KEY"]
    env["LOCALNODE_ENABLED"] = "true"

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    for check in ("mission_control.E001", "mission_control.W002", "mission_control.W003"):
        assert check in result.stderr, check


def test_no_security_check_is_silenced() -> None:
    silenced = getattr(django_settings, "SILENCED_SYSTEM_CHECKS", [])
    # Only SQLite's "no INCLUDE columns in indexes" warning may be, and only on SQLite.
    assert set(silenced) <= ({"models.W040"} if connection.vendor == "sqlite" else set())


def test_responses_carry_the_security_headers(client: Client) -> None:
    response = client.get("/login/")

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_https_responses_carry_hsts_in_production(client: Client, settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    response = client.get("/login/", secure=True)

    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


def test_session_cookies_are_http_only_and_same_site(client: Client) -> None:
    user = factories.UserFactory(username="ana", role="viewer")
    client.post("/login/", {"username": user.username, "password": PASSWORD})

    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


# --- CSRF -------------------------------------------------------------------------


def _session_client(role: str, **extra: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(factories.UserFactory(role=role, **extra))
    return client


def test_session_authenticated_api_writes_need_the_csrf_token() -> None:
    client = _session_client("admin")
    body = {"name": "w", "base_url": "http://127.0.0.1:9"}

    refused = client.post("/api/workers/", body, content_type="application/json")

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    client.get("/")  # the dashboard sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/workers/", body, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201


def test_token_authenticated_api_writes_need_no_csrf_token(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/workers/", {"name": "w", "base_url": "http://127.0.0.1:9"}, format="json"
    )

    assert response.status_code == 201


@pytest.mark.parametrize("path", ["/missoes/nova/", "/execucao/pausa/", "/configuracoes/grupo/2/"])
def test_dashboard_writes_need_the_csrf_token(path: str) -> None:
    client = _session_client("admin")

    assert client.post(path, {"value": "3"}).status_code == 403


def test_admin_writes_need_the_csrf_token() -> None:
    client = _session_client("admin", is_staff=True, is_superuser=True)

    response = client.post("/admin/registry/worker/add/", {"name": "w"})

    assert response.status_code == 403


# --- login throttling ----------------------------------------------------------------


def _fail(client: Client, path: str, username: str, n: int) -> list[int]:
    return [
        client.post(path, {"username": username, "password": "errada"}).status_code
        for _ in range(n)
    ]


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_repeated_failed_logins_lock_the_account_on_this_address(path: str, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    factories.UserFactory(username="ana", role="admin", is_staff=True, is_superuser=True)
    client = Client()

    codes = _fail(client, path, "ana", 3)
    locked = client.post(path, {"username": "ana", "password": PASSWORD})

    assert codes[:2] == [200, 200]  # the form again, with an error
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by these failures.
    other = Client(REMOTE_ADDR="198.51.100.20")
    assert other.post(path, {"username": "ana", "password": PASSWORD}).status_code == 302


def test_the_token_endpoint_is_guarded_by_the_lockout_too(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    user = factories.UserFactory(username="ana", role="viewer")
    client = APIClient()
    for _ in range(3):
        client.post("/api/auth/token/", {"username": "ana", "password": "errada"})

    response = client.post("/api/auth/token/", {"username": "ana", "password": PASSWORD})

    assert response.status_code in (401, 403, 429)
    assert not ApiToken.objects.filter(user=user).exists()


def test_api_docs_and_schema_are_not_public(client: Client) -> None:
    for path in ("/api/schema/", "/api/docs/"):
        assert client.get(path).status_code in (401, 403), path
