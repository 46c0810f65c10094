"""Console pages ship htmx (52 kB, most of a page's script time on a phone) only when
they use it: a page without hx-* requests loads app.js alone (issue #19). The live pages
poll with htmx; the resources pages' "Testar conexão" is a plain fetch in app.js."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db

HX_REQUEST = re.compile(r"\shx-(get|post|put|patch|delete)=")
HTMX_SCRIPT = re.compile(r'<script src="[^"]*/vendor/htmx[^"]*\.js" defer></script>')

USES_HTMX = {
    "/",
    "/missoes/",
    "/missoes/{mission}/",
    "/execucao/",
}
NO_HTMX = {
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


def test_htmx_is_loaded_exactly_where_hx_requests_are(login: Callable[..., Client]) -> None:
    mission = factories.MissionFactory(n_items=1)
    factories.WorkerFactory()
    factories.WriterFactory()
    factories.UploaderFactory()
    factories.ProxyFactory()
    client = login("admin")
    item = mission.items.first()
    assert item is not None
    for url in sorted(USES_HTMX | NO_HTMX):
        response = client.get(url.format(mission=mission.pk, item=item.pk))
        assert response.status_code == 200, url
        body = response.content.decode()
        uses = bool(HX_REQUEST.search(body))
        assert uses == (url in USES_HTMX), url
        assert len(HTMX_SCRIPT.findall(body)) == int(uses), url
        assert "/js/app" in body, url


def test_login_page_has_no_htmx(client: Client) -> None:
    body = client.get("/login/").content.decode()
    assert not HTMX_SCRIPT.search(body) and "/js/app" in body


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
