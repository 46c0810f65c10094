"""Dashboard tables on a phone: every cell arrives labelled with its column (data-label)
and the state column marked (data-state-col) from the server, so the card layout is
there at the first paint; no script relabels the tables after load (issue #19)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from orchestrator.models import WebhookDelivery, WebhookEndpoint
from tests import factories

STATE_HEADERS = {"estado", "saúde", "status"}
TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _expected(header: str) -> tuple[str | None, bool]:
    """The data-label a cell under `header` carries (None: no label), and whether it
    is the state column."""
    return (header or None), header.lower() in STATE_HEADERS


class _Tables(HTMLParser):
    """Cells of `table.table` bodies as (headers, cell index, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[list[str], int, dict[str, str | None]]] = []
        self.in_table = self.in_thead = self.in_th = False
        self.heads: list[str] = []
        self.index = -1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and "table" in (a.get("class") or "").split():
            self.in_table, self.heads = True, []
        elif not self.in_table:
            return
        elif tag == "thead":
            self.in_thead = True
        elif tag == "th" and self.in_thead:
            self.in_th = True
            self.heads.append("")
        elif tag == "tr" and not self.in_thead:
            self.index = -1
        elif tag in ("td", "th") and not self.in_thead:
            self.index += 1
            self.cells.append((self.heads, self.index, a))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_table = False
        elif tag == "thead":
            self.in_thead = False
        elif tag == "th":
            self.in_th = False

    def handle_data(self, data: str) -> None:
        if self.in_th:
            self.heads[-1] = (self.heads[-1] + data).strip()


def _problems(body: str) -> tuple[int, list[str]]:
    parser = _Tables()
    parser.feed(body)
    problems = []
    for heads, i, attrs in parser.cells:
        label, state = _expected(heads[i] if i < len(heads) else "")
        if not heads:
            continue  # a table without a header row (an item's response headers)
        if attrs.get("data-label") != label:
            problems.append(f"column {heads[i : i + 1]}: data-label={attrs.get('data-label')!r}")
        if ("data-state-col" in attrs) != state:
            problems.append(
                f"column {heads[i : i + 1]}: data-state-col {'missing' if state else 'extra'}"
            )
    return len(parser.cells), problems


def test_app_js_does_not_rewrite_tables() -> None:
    script = (Path(settings.BASE_DIR) / "static" / "js" / "app.js").read_text()
    assert "data-label" not in script.replace("the templates write each cell's data-label", "")
    assert "data-state-col" not in script
    assert "tbody" not in script


def _template_sources() -> list[Path]:
    return sorted(p for p in TEMPLATES.rglob("*.html") if '<table class="table' in p.read_text())


def _source_cells(source: str) -> tuple[int, list[str]]:
    """The same check on a template's source: Django tags are left out, so a column
    shown under `{% if %}` pairs with its cell written under the same condition."""
    plain = re.sub(r"{%.*?%}|{#.*?#}", "", source, flags=re.S)
    plain = re.sub(r"{{.*?}}", "x", plain, flags=re.S)
    return _problems(html.unescape(plain))


@pytest.mark.parametrize("path", _template_sources(), ids=lambda p: p.name)
def test_every_table_template_labels_its_cells(path: Path) -> None:
    cells, problems = _source_cells(path.read_text())
    assert cells, path
    assert not problems, (path.name, problems)


@pytest.mark.django_db
def test_rendered_pages_carry_labels_on_every_cell(login: Callable[..., Client]) -> None:
    now = timezone.now()
    writer = factories.WriterFactory(name="writer-principal", is_default=True)
    worker = factories.WorkerFactory(name="worker-sp-1", max_sessions=8, active_sessions=1)
    factories.UploaderFactory(name="uploader-s3")
    proxy = factories.ProxyFactory(type="residential", country="BR")
    factories.SiteConfigFactory(domain="loja.com.br", proxy_types=["residential"])
    mission = factories.MissionFactory(
        name="Catálogo", domain="loja.com.br", n_items=3, writer=writer
    )
    factories.BrowserSessionFactory(
        mission=mission, worker=worker, proxy=proxy, status="busy", last_activity_at=now
    )
    factories.OrchestratorInstanceFactory(
        stats={
            "missions": {"last_tick_at": now.isoformat(), "duration_ms": 5, "did": 1, "ticks": 3}
        }
    )
    factories.RecurringMissionFactory(name="Preços diários")
    endpoint = WebhookEndpoint.objects.create(
        name="ops", url="https://hooks.example.com/in", secret="s", events=["mission.*"]
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        event="mission.finalizado",
        payload={},
        idempotency_key="k",
        created_at=now,
    )
    client = login("admin")
    total = 0
    for url in [
        "/",
        "/missoes/",
        "/missoes/parcial/",
        f"/missoes/{mission.pk}/",
        f"/missoes/{mission.pk}/parcial/",
        "/execucao/",
        "/recursos/workers/",
        "/recursos/writers/",
        "/recursos/uploaders/",
        "/recursos/proxies/",
        "/estrategias/",
        "/webhooks/",
        "/recorrentes/",
        "/configuracoes/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        cells, problems = _problems(response.content.decode())
        assert cells, url
        assert not problems, (url, problems)
        total += cells
    assert total > 100
