"""Access control: every URL the resolver knows refuses anonymous requests (but the
few public ones listed with a reason), and roles are enforced on every API write."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db

# Public on purpose, each for a reason.
PUBLIC = {
    "login/": "the dashboard's login form",
    "logout/": "logging out needs no session (POST only)",
    "admin/login/": "the admin's login form",
    "admin/logout/": "logging out needs no session",
    "api/auth/token/": "exchanges credentials for a token (throttled, axes-guarded)",
    "healthz": "load balancer liveness (says only ok)",
    "healthz/orchestrator": "orchestrator monitor (says only fresh/stale)",
    "readyz": "load balancer readiness (says only up/down)",
    "robots.txt": "the demo shop's robots.txt (only with the built-in node on)",
}
# The demo catalogue is the built-in scraping target, public like any shop.
PUBLIC_PREFIXES = ("local/demo/",)
REFUSED = {401, 403}
LOGIN_REDIRECTS = ("/login/", "/admin/login/")


def _sample_route(route: str) -> str:
    return re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "x", route)


def _sample_regex(regex: str) -> str | None:
    if "format" in regex:
        return None  # format-suffix twins of routes walked anyway
    text = regex.lstrip("^").rstrip("$")
    text = re.sub(r"\(\?P<\w+>[^)]*\)", "1", text)
    text = text.replace("/?", "/").replace("\\", "")
    return text


def walk(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        pattern = entry.pattern
        if isinstance(pattern, RoutePattern):
            part: str | None = _sample_route(str(pattern._route))
        elif isinstance(pattern, RegexPattern):
            part = _sample_regex(pattern._regex)
        else:
            part = None
        if part is None:
            continue
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + part)
        elif isinstance(entry, URLPattern):
            yield prefix + part


def all_paths() -> list[str]:
    return sorted(set(walk(get_resolver().url_patterns)))


def _is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


@pytest.fixture(autouse=True)
def _guarded(settings: Any) -> Iterator[None]:
    # /local/ is guarded by its bearer key when one is set (deploy check W002).
    settings.LOCALNODE_API_KEY = "localnode-key"
    cache.clear()
    yield
    cache.clear()


def test_the_walk_finds_every_area() -> None:
    paths = all_paths()

    for expected in ("admin/", "api/workers/1/", "api/missions/", "api/schema/", "metrics", ""):
        assert expected in paths, expected
    assert len(paths) > 60


@pytest.mark.parametrize("path", [p for p in all_paths() if not _is_public(p)])
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_requests_are_refused(path: str, method: str) -> None:
    response = getattr(Client(), method)("/" + path)

    if response.status_code in (301, 302):
        assert response["Location"].startswith(LOGIN_REDIRECTS), response["Location"]
    else:
        # 405: the method does not exist there, so nothing is served either.
        assert response.status_code in {*REFUSED, 405}, (path, response.status_code)


def _api_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method, path)
        for path, ops in schema["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "max_retries" if m.group(1) == "key" else "1", path)


# POSTs that change nothing (a query with a body), open to viewers.
READS_BY_POST = {("post", "/api/allocation/dry-run/")}
# A user's own credentials: any role signs in and revokes its own tokens (another user's
# token answers 404: tests/integration/test_api_tokens.py).
OWN_CREDENTIALS = ("/api/auth/token/", "/api/auth/tokens/{id}/")
WRITES = [
    (m, p)
    for m, p in _api_operations()
    if m != "get" and p not in OWN_CREDENTIALS and (m, p) not in READS_BY_POST
]
# Operators run missions (and their schedules), pause execution and replay webhook
# deliveries; resources, config and integrations stay with admins.
OPERATOR_AREAS = ("/api/missions/", "/api/recurring-missions/", "/api/execution/")
OPERATOR_ACTIONS = {("post", "/api/webhook-deliveries/{id}/replay/")}


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_viewer_cannot_write_anything(viewer_api: APIClient, method: str, path: str) -> None:
    factories.WorkerFactory()
    response = getattr(viewer_api, method)(_concrete(path), {}, format="json")

    assert response.status_code == 403, response.content


@pytest.mark.parametrize(
    ("method", "path"),
    [w for w in WRITES if not w[1].startswith(OPERATOR_AREAS) and w not in OPERATOR_ACTIONS],
)
def test_an_operator_cannot_change_resources_or_config(
    operator_api: APIClient, method: str, path: str
) -> None:
    response = getattr(operator_api, method)(_concrete(path), {}, format="json")

    assert response.status_code == 403, response.content


def test_missions_and_sessions_change_state_only_through_actions() -> None:
    ops = set(_api_operations())

    assert not {m for m, p in ops if p == "/api/missions/{id}/"} - {"get"}
    assert not {m for m, p in ops if p.startswith("/api/sessions/")} - {"get"}
    assert {("post", "/api/missions/{id}/cancel/"), ("post", "/api/missions/{id}/retry/")} <= ops


def test_secrets_are_write_only_fields_in_the_schema() -> None:
    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]

    for name in ("Worker", "Writer", "Uploader"):
        assert "api_key" not in schemas[name]["properties"]
        assert "api_key" in schemas[f"{name}Request"]["properties"]
    assert "password" not in schemas["Proxy"]["properties"]
    assert "password" in schemas["ProxyRequest"]["properties"]


def test_a_viewer_cannot_reach_admin_only_dashboard_actions(client: Client) -> None:
    viewer = factories.UserFactory(role="viewer", is_staff=True)
    worker = factories.WorkerFactory()
    client.force_login(viewer)

    assert client.post(f"/recursos/workers/{worker.pk}/testar/").status_code == 403
    assert client.post(f"/recursos/workers/{worker.pk}/excluir/").status_code == 403
    assert client.get("/recursos/workers/novo/").status_code == 403
