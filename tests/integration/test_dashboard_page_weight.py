"""Console pages load one small script, app.js, and no htmx (52 kB; its start-up was
most of a live page's script time on a phone, issue #19): the live pages poll their
partials with a few lines of app.js (data-poll-url), the resources pages' "Testar
conexão" is a plain fetch in app.js."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db

SCRIPT = re.compile(r"<script\b[^>]*>")
POLL = re.compile(r'\sdata-poll-url="([^"]+)"')

LIVE = {
    "/": "/visao-geral/parcial/",
    "/missoes/": "/missoes/parcial/",
    "/missoes/{mission}/": "/missoes/{mission}/parcial/",
    "/execucao/": "/execucao/parcial/",
}
NOT_LIVE = {
    "/recursos/workers/",
    "/recursos/writers/",
    "/recursos/uploaders/",
    "/recursos/proxies/",
    "/missoes/nova/",
    "/missoes/{mission}/itens/{item}/",
    "/estrategias/",
    "/estrategias/nova/",
    "/configuracoes/",
    "/webhooks/",
    "/webhooks/novo/",
    "/recorrentes/",
    "/recorrentes/nova/",
    "/recursos/workers/novo/",
}


def _scripts(body: str) -> list[str]:
    """The page's <script> tags other than the nonced inline theme script."""
    return [t for t in SCRIPT.findall(body) if "nonce=" not in t]


def test_only_app_js_is_loaded_and_live_pages_poll_their_partial(
    login: Callable[..., Client],
) -> None:
    mission = factories.MissionFactory(n_items=1)
    factories.WorkerFactory()
    factories.WriterFactory()
    factories.UploaderFactory()
    factories.ProxyFactory()
    client = login("admin")
    item = mission.items.first()
    assert item is not None
    for url in sorted(set(LIVE) | NOT_LIVE):
        response = client.get(url.format(mission=mission.pk, item=item.pk))
        assert response.status_code == 200, url
        body = response.content.decode()
        assert "htmx" not in body and " hx-" not in body, url
        scripts = _scripts(body)
        assert len(scripts) == 1 and "/js/app" in scripts[0] and " defer" in scripts[0], url
        polls = POLL.findall(body)
        if url in LIVE:
            assert [p.split("?")[0] for p in polls] == [LIVE[url].format(mission=mission.pk)], url
            assert client.get(polls[0]).status_code == 200, url
        else:
            assert polls == [], url


def test_login_page_has_no_htmx(client: Client) -> None:
    body = client.get("/login/").content.decode()
    assert "htmx" not in body
    scripts = _scripts(body)
    assert len(scripts) == 1 and "/js/app" in scripts[0]


def test_app_js_polls_without_htmx() -> None:
    js = (settings.BASE_DIR / "static/js/app.js").read_text()
    assert "htmx" not in js
    assert "data-poll-url" in js and "If-None-Match" in js and "286" in js


def test_long_blocks_below_the_fold_are_drawn_only_when_near(
    login: Callable[..., Client],
) -> None:
    """The mission's sessions, timeline and items and every settings group are
    content-visibility: auto (.defer-render): a phone's first layout, and each relayout
    a late web font forces, covers only what is on screen."""
    mission = factories.MissionFactory(n_items=3)
    client = login("admin")
    body = client.get(f"/missoes/{mission.pk}/").content.decode()
    for label in ("sess-title", "ev-title", "items-title"):
        assert re.search(
            rf'<section class="card defer-render[^"]*" aria-labelledby="{label}"', body
        ), label
    body = client.get("/configuracoes/").content.decode()
    groups = re.findall(r'<section class="([^"]*)"[^>]*data-settings-group=', body)
    assert groups and all("defer-render" in g.split() for g in groups)
    css = (settings.BASE_DIR / "static/css/app.css").read_text()
    assert ".defer-render{content-visibility:auto;" in css
