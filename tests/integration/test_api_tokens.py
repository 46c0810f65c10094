"""API tokens: hashed at rest, expiring, revocable (DELETE, admin, password change)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from registry import tokens
from registry.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/auth/token/"
PASSWORD = "senha-forte-123"


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def login(client: APIClient, username: str = "ana") -> dict[str, Any]:
    response = client.post(URL, {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def authed(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_only_a_hash_of_the_key_is_stored() -> None:
    factories.UserFactory.create(username="ana", role="viewer")

    key = login(APIClient())["token"]

    token = ApiToken.objects.get()
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:12]
    stored = str(list(ApiToken.objects.values()))
    assert key not in stored
    assert key[12:] not in stored


def test_the_token_expires_after_the_configured_days(settings: Any) -> None:
    settings.API_TOKEN_TTL_DAYS = 2
    user = factories.UserFactory.create(username="ana", role="viewer")
    body = login(APIClient())
    assert authed(body["token"]).get("/api/workers/").status_code == 200

    token = ApiToken.objects.get(user=user)
    assert token.expires_at is not None
    assert dt.timedelta(days=2) - (token.expires_at - token.created_at) < dt.timedelta(seconds=5)
    token.expires_at = timezone.now() - dt.timedelta(seconds=1)
    token.save(update_fields=["expires_at"])

    response = authed(body["token"]).get("/api/workers/")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_zero_days_means_the_token_never_expires(settings: Any) -> None:
    settings.API_TOKEN_TTL_DAYS = 0
    factories.UserFactory.create(username="ana", role="viewer")

    assert login(APIClient())["expires_at"] is None
    assert ApiToken.objects.get().expires_at is None


def test_delete_revokes_the_presented_token_only() -> None:
    factories.UserFactory.create(username="ana", role="viewer")
    first, second = login(APIClient())["token"], login(APIClient())["token"]

    assert authed(first).delete(URL).status_code == 204

    assert authed(first).get("/api/workers/").status_code == 401
    assert authed(second).get("/api/workers/").status_code == 200
    assert authed(first).delete(URL).status_code == 401


def test_delete_without_a_token_is_401_in_the_error_shape() -> None:
    response = APIClient().delete(URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_stale_header_does_not_block_logging_in() -> None:
    factories.UserFactory.create(username="ana", role="viewer")
    client = authed("mc_revogado")

    assert client.post(URL, {"username": "ana", "password": PASSWORD}).status_code == 200


def test_a_password_change_revokes_every_token_of_the_user() -> None:
    user = factories.UserFactory.create(username="ana", role="viewer")
    other = factories.UserFactory.create(username="bia", role="viewer")
    keys = [login(APIClient())["token"] for _ in range(2)]
    other_key = login(APIClient(), "bia")["token"]

    user.refresh_from_db()
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])  # not a password change
    assert authed(keys[0]).get("/api/workers/").status_code == 200

    user.set_password("outra-senha-456")
    user.save()

    assert [authed(k).get("/api/workers/").status_code for k in keys] == [401, 401]
    assert authed(other_key).get("/api/workers/").status_code == 200
    assert other.api_tokens.filter(revoked_at__isnull=True).count() == 1


def test_the_admin_revokes_tokens_and_never_shows_a_key_or_hash() -> None:
    factories.UserFactory.create(username="ana", role="viewer")
    key = login(APIClient())["token"]
    token = ApiToken.objects.get()
    admin = factories.UserFactory.create(username="root")
    admin.is_superuser = admin.is_staff = True
    admin.save()
    browser = Client()
    browser.force_login(admin)

    page = browser.get(f"/admin/registry/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in page
    assert token.digest not in page and key not in page
    response = browser.post(
        "/admin/registry/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )

    assert response.status_code == 302
    assert authed(key).get("/api/workers/").status_code == 401
    assert browser.get("/admin/authtoken/tokenproxy/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_plaintext_tokens_into_hashes() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    user = factories.UserFactory.create(username="ana", role="viewer")
    executor = MigrationExecutor(connection)
    target = [("registry", "0007_site_providers")]
    try:
        executor.migrate(target)
        tokens_app = ("authtoken", "0004_alter_tokenproxy_options")
        old_apps = executor.loader.project_state([*target, tokens_app]).apps
        old_apps.get_model("authtoken", "Token").objects.create(key="a" * 40, user_id=user.pk)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    finally:
        call_command("migrate", verbosity=0)

    from rest_framework.authtoken.models import Token

    assert not Token.objects.exists()
    assert tokens.find_live("a" * 40) is not None
    assert authed("a" * 40).get("/api/workers/").status_code == 200


TOKENS = "/api/auth/tokens/"


def session_client(username: str) -> APIClient:
    """A browser that logged in to the dashboard (session cookie) and sends CSRF."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(factories.UserFactory._meta.model.objects.get(username=username))
    client.cookies["csrftoken"] = get_random_string(32)  # as the dashboard's pages set it
    return client


def _csrf(client: APIClient) -> dict[str, str]:
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def test_a_session_lists_and_revokes_its_own_tokens_without_a_key() -> None:
    factories.UserFactory.create(username="ana", role="viewer")
    factories.UserFactory.create(username="bia", role="admin")
    key, other_key = login(APIClient())["token"], login(APIClient(), "bia")["token"]
    client = session_client("ana")

    listed = client.get(TOKENS).json()["results"]
    assert [(t["prefix"], t["live"]) for t in listed] == [(key[:12], True)]
    assert key not in str(listed) and ApiToken.objects.get(prefix=key[:12]).digest not in str(
        listed
    )
    token_id = listed[0]["id"]

    # A session must send the CSRF token, like any browser write.
    refused = client.delete(f"{TOKENS}{token_id}/")
    assert refused.status_code == 403
    assert authed(key).get("/api/workers/").status_code == 200

    assert client.delete(f"{TOKENS}{token_id}/", **_csrf(client)).status_code == 204
    assert authed(key).get("/api/workers/").status_code == 401
    assert client.get(f"{TOKENS}{token_id}/").json()["live"] is False
    # Another user's token is not even visible.
    bia_token = ApiToken.objects.get(prefix=other_key[:12])
    assert client.delete(f"{TOKENS}{bia_token.pk}/", **_csrf(client)).status_code == 404
    assert authed(other_key).get("/api/workers/").status_code == 200


def test_a_token_revokes_another_token_of_its_user_and_anonymous_gets_401() -> None:
    factories.UserFactory.create(username="ana", role="viewer")
    first, second = login(APIClient())["token"], login(APIClient())["token"]
    second_id = ApiToken.objects.get(prefix=second[:12]).pk

    assert authed(first).delete(f"{TOKENS}{second_id}/").status_code == 204

    assert authed(second).get("/api/workers/").status_code == 401
    assert authed(first).get("/api/workers/").status_code == 200
    anonymous = APIClient().get(TOKENS)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"


def test_changing_the_password_in_the_admin_revokes_the_tokens() -> None:
    user = factories.UserFactory.create(username="ana", role="viewer")
    factories.UserFactory.create(username="root", is_staff=True, is_superuser=True)
    key = login(APIClient())["token"]
    admin = Client()
    admin.force_login(factories.UserFactory._meta.model.objects.get(username="root"))

    response = admin.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": "outra-senha-456", "password2": "outra-senha-456", "usable_password": "true"},
    )

    assert response.status_code == 302, response.content[:500]
    assert authed(key).get("/api/workers/").status_code == 401
    assert ApiToken.objects.get().revoked_at is not None
