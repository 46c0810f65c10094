"""Content-Security-Policy: every kind of response (dashboard, login, admin, API, API
docs) carries the strict policy; inline <script>/<style> blocks carry the request's
nonce and no template renders a style="" attribute."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.http import HttpResponse
from django.test import Client
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db

STRICT = {
    "default-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
    "font-src": {"'self'"},
    "connect-src": {"'self'"},
    "img-src": {"'self'", "data:"},
}


def policy(response: HttpResponse) -> dict[str, set[str]]:
    directives: dict[str, set[str]] = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        directives[name] = set(sources)
    return directives


def assert_strict(response: HttpResponse) -> dict[str, set[str]]:
    directives = policy(response)
    for name, sources in STRICT.items():
        assert directives[name] == sources, name
    for name in ("script-src", "style-src"):
        sources = directives[name]
        assert "'self'" in sources
        assert not sources & {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'"}, name
        assert {s for s in sources if s != "'self'"} <= {s for s in sources if "nonce-" in s}
    return directives


def nonces_in(html: str) -> set[str]:
    return set(re.findall(r'<(?:script|style)[^>]*\snonce="([^"]+)"', html))


def assert_inline_blocks_carry_the_nonce(response: HttpResponse) -> None:
    html = response.content.decode()
    directives = assert_strict(response)
    inline = re.findall(r"<(script|style)(\s[^>]*)?>(?!</)", html)
    inline = [(tag, attrs) for tag, attrs in inline if "src=" not in (attrs or "")]
    assert inline, "expected an inline block"
    for tag, attrs in inline:
        assert "nonce=" in (attrs or ""), f"<{tag}{attrs}> has no nonce"
    (nonce,) = nonces_in(html)
    assert f"'nonce-{nonce}'" in directives["script-src"]
    assert f"'nonce-{nonce}'" in directives["style-src"]
    assert not re.search(r"\sstyle=", html), "style attributes are refused by the policy"


@pytest.mark.parametrize(
    "path",
    ["/", "/missoes/", "/missoes/nova/", "/execucao/", "/recursos/workers/", "/configuracoes/"],
)
def test_dashboard_pages_send_the_policy_and_nonce_their_inline_blocks(
    login: Callable[[str | None], Client], path: str
) -> None:
    response = login("admin").get(path)
    assert response.status_code == 200
    assert_inline_blocks_carry_the_nonce(response)


def test_the_mission_page_and_its_live_partial_have_no_style_attributes(
    login: Callable[[str | None], Client],
) -> None:
    mission = factories.MissionFactory(n_items=4)
    client = login("admin")
    page = client.get(f"/missoes/{mission.pk}/")
    assert_inline_blocks_carry_the_nonce(page)
    assert "data-bar=" in page.content.decode()
    for path in (f"/missoes/{mission.pk}/parcial/", "/missoes/parcial/", "/visao-geral/parcial/"):
        partial = client.get(path, headers={"HX-Request": "true"})
        assert partial.status_code == 200, path
        assert_strict(partial)
        assert "data-bar=" in partial.content.decode(), path
        assert not re.search(r"\sstyle=", partial.content.decode()), path


def test_the_login_page_sends_the_policy(client: Client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert_inline_blocks_carry_the_nonce(response)


def test_each_response_gets_its_own_nonce(client: Client) -> None:
    first, second = client.get("/login/"), client.get("/login/")
    assert nonces_in(first.content.decode()) != nonces_in(second.content.decode())


def test_admin_pages_send_the_policy(client: Client) -> None:
    login = client.get("/admin/login/")
    assert login.status_code == 200
    assert_inline_blocks_carry_the_nonce(login)
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    for path in ("/admin/", "/admin/orchestrator/mission/", "/admin/orchestrator/mission/add/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_inline_blocks_carry_the_nonce(response)


def test_api_responses_send_the_policy(
    admin_api: APIClient, anon_api: APIClient, make_api_client: Callable[..., APIClient]
) -> None:
    ok = admin_api.get("/api/missions/")
    assert ok.status_code == 200
    assert_strict(ok)
    assert_strict(anon_api.get("/api/missions/"))  # errors too
    assert_strict(admin_api.get("/api/no-such-route/"))


def test_the_api_docs_page_is_self_hosted_and_nonced(admin_api: APIClient) -> None:
    response = admin_api.get("/api/docs/")
    assert response.status_code == 200
    assert_inline_blocks_carry_the_nonce(response)
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr.net" not in html
