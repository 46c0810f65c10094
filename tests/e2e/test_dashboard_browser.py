"""The dashboard in a real Chromium: every page at desktop and mobile sizes in both
themes (no console error, no failed request, no serious axe violation), theme and
sidebar behaviour, live refresh, the mission form, bulk cancel and connection tests."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from orchestrator.models import Mission, MissionEvent, MissionItem
from orchestrator.states import MissionStatus
from tests import factories
from tests.e2e.conftest import DESKTOP, MOBILE, Watched, copy_screenshots_to_docs, wait_ready
from tests.patience import Deadline

pytestmark = [pytest.mark.browser]


def _seed() -> dict[str, Any]:
    now = timezone.now()
    admin = factories.UserFactory(username="ana.admin", role="admin")
    writer = factories.WriterFactory(name="writer-principal", is_default=True)
    w1 = factories.WorkerFactory(name="worker-sp-1", max_sessions=8, active_sessions=5)
    factories.WorkerFactory(
        name="worker-rj-2",
        max_sessions=8,
        active_sessions=2,
        health_status="degraded",
        last_error="timeout em /health",
    )
    factories.UploaderFactory(name="uploader-s3")
    proxies = [
        factories.ProxyFactory(type="residential", country="BR"),
        factories.ProxyFactory(type="residential", country="BR", status="cooldown"),
        factories.ProxyFactory(type="datacenter", country="US"),
        factories.ProxyFactory(type="mobile", country="BR", status="banned"),
    ]
    factories.SiteConfigFactory(domain="*")
    factories.SiteConfigFactory(domain="loja.com.br", proxy_types=["residential"], max_sessions=6)
    states = [
        ("Catálogo de eletrônicos", MissionStatus.EXTRAINDO, 120, 48),
        ("Preços diários — moda", MissionStatus.QUEUED, 40, 0),
        ("Ofertas relâmpago", MissionStatus.ATRIBUIDO, 60, 0),
        ("Resenhas de produtos", MissionStatus.FINALIZADO, 80, 80),
        ("Estoque de farmácias", MissionStatus.ERRO, 30, 12),
        ("Marketplace — livros", MissionStatus.ARMAZENANDO, 50, 50),
        ("Imóveis para alugar", MissionStatus.CANCELADO, 25, 3),
    ]
    missions: list[Any] = []
    for name, status, total, done in states:
        m = factories.MissionFactory(
            name=name,
            status=status,
            domain="loja.com.br",
            n_items=total,
            writer=writer,
            priority=len(missions) % 3,
        )
        fields: dict[str, Any] = {"done_items": done, "atribuido_at": None}
        if status != MissionStatus.QUEUED:
            fields["atribuido_at"] = now - dt.timedelta(minutes=30)
        if status in (MissionStatus.EXTRAINDO, MissionStatus.ARMAZENANDO, MissionStatus.FINALIZADO):
            fields["extraindo_at"] = now - dt.timedelta(minutes=28)
        if status == MissionStatus.FINALIZADO:
            fields["armazenando_at"] = now - dt.timedelta(minutes=5)
            fields["finalizado_at"] = now - dt.timedelta(minutes=4)
        if status == MissionStatus.ERRO:
            fields["error_code"] = "SCRAPE_ALL_ITEMS_FAILED"
            fields["error_message"] = "Todos os itens restantes falharam após 3 tentativas."
        if status == MissionStatus.QUEUED:
            fields["wait_reason"] = "Sem capacidade livre nos workers (ALLOC_NO_CAPACITY)"
        Mission.objects.filter(pk=m.pk).update(**fields)
        ids = list(MissionItem.objects.filter(mission=m).values_list("pk", flat=True)[:done])
        for i, pk in enumerate(ids):
            MissionItem.objects.filter(pk=pk).update(
                status="done", finished_at=now - dt.timedelta(minutes=(i * 37) % 1380)
            )
        missions.append(m)
    running = missions[0]
    for p in proxies[:2]:
        factories.BrowserSessionFactory(
            mission=running,
            worker=w1,
            proxy=p,
            status="busy",
            phase="extraindo",
            last_activity_at=now,
        )
    for i, kind in enumerate(["transition", "session", "job", "error"]):
        MissionEvent.objects.create(
            mission=running,
            kind=kind,
            to_status="EXTRAINDO" if kind == "transition" else "",
            error_code="SCRAPE_BLOCKED" if kind == "error" else "",
            message=[
                "Primeiro job iniciado",
                "Sessão aberta em worker-sp-1",
                "Job 3 concluído",
                "Página bloqueada (403)",
            ][i],
            created_at=now - dt.timedelta(minutes=10 - i),
        )
    MissionEvent.objects.create(
        mission=missions[4],
        kind="transition",
        to_status="ERRO",
        error_code="SCRAPE_ALL_ITEMS_FAILED",
        message="Todos os itens falharam",
        created_at=now - dt.timedelta(minutes=20),
    )
    MissionEvent.objects.create(
        mission=missions[3],
        kind="transition",
        to_status="FINALIZADO",
        created_at=now - dt.timedelta(minutes=4),
    )
    factories.OrchestratorInstanceFactory(
        name="mc-host:4242",
        hostname="mc-host",
        event_bus="notify",
        stats={
            "sessions": {
                "last_tick_at": now.isoformat(),
                "duration_ms": 84,
                "did": 2,
                "error": "",
                "ticks": 1520,
            },
            "workers": {
                "last_tick_at": now.isoformat(),
                "duration_ms": 231,
                "did": 5,
                "error": "",
                "ticks": 760,
            },
            "missions": {
                "last_tick_at": now.isoformat(),
                "duration_ms": 12,
                "did": 0,
                "error": "WRITER_UNAVAILABLE: writer-principal não respondeu",
                "error_at": (now - dt.timedelta(minutes=3)).isoformat(),
                "ticks": 760,
            },
        },
    )
    return {"admin": admin, "missions": missions, "running": running, "worker": w1}


def _pages(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("visao-geral", "/"),
        ("missoes", "/missoes/"),
        ("missao-nova", "/missoes/nova/"),
        ("missao-detalhe", f"/missoes/{data['running'].pk}/"),
        ("execucao", "/execucao/"),
        ("recursos-workers", "/recursos/workers/"),
        ("recursos-proxies", "/recursos/proxies/"),
        ("estrategias", "/estrategias/"),
        ("configuracoes", "/configuracoes/"),
    ]


# Stops the page's live polls and waits until no poll is under way (aria-busy): axe and
# the screenshots then read one settled DOM, not a partial mid-swap.
# Blocks below the fold (.defer-render, content-visibility: auto) are drawn now, as
# scrolling to them would: axe reads the whole page, and a theme switch must restyle
# them before it does (a skipped block is restyled, and its colours start their
# transition, only when it is next drawn).
FREEZE_LIVE_UPDATES = """() => new Promise(resolve => {
  document.querySelectorAll('.defer-render').forEach(el => { el.style.contentVisibility = 'visible'; });
  document.querySelectorAll('[data-poll]').forEach(el => el.removeAttribute('data-poll'));
  const check = () => document.querySelector('[data-poll-url][aria-busy]') ? setTimeout(check, 50) : resolve();
  check();
})"""


NO_TRANSITIONS = """() => Array.from(document.querySelectorAll('.btn, .nav-item'))
  .every(el => getComputedStyle(el).transitionDuration.split(',')
    .every(d => parseFloat(d) < 0.001))"""


def _set_theme(page: Any, theme: str) -> None:
    page.evaluate("t => document.documentElement.classList.toggle('dark', t === 'dark')", theme)
    # Read colours only once every transition the switch started has ended (a loaded
    # machine can sample one mid-way: light background, dark text).
    page.evaluate(
        "() => Promise.all(document.getAnimations().filter(a => a instanceof CSSTransition).map(a => a.finished.catch(() => null)))"
    )
    # Let the switch paint (blurred layers repaint a frame late) before axe or a screenshot.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = Deadline(timeout)
    while not deadline.expired():
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met before the deadline")


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("mobile", MOBILE)])
def test_every_page_is_clean_accessible_and_captured(
    open_page: Callable[..., Watched],
    live_server: Any,
    axe: Callable[[Any], list[dict[str, Any]]],
    screenshot_dir: Path,
    size: str,
    viewport: dict[str, int],
) -> None:
    data = _seed()
    problems: list[str] = []
    login = open_page(None, viewport)
    login.page.goto(live_server.url + "/login/")
    shots = [("login", login)]
    w = open_page(data["admin"], viewport)
    for name, url in [("login", "/login/"), *_pages(data)]:
        page = login.page if name == "login" else w.page
        if name != "login":
            page.goto(live_server.url + url)
        wait_ready(page)
        page.evaluate(FREEZE_LIVE_UPDATES)
        # Reduced motion is honoured (no colour transition for axe to read mid-way).
        assert page.evaluate(NO_TRANSITIONS), name
        for theme in ("dark", "light"):
            _set_theme(page, theme)
            for v in axe(page):
                problems.append(
                    f"{name} [{size}/{theme}] axe {v['impact']} {v['id']}: {v['nodes']}"
                )
            page.screenshot(path=str(screenshot_dir / f"{name}-{size}-{theme}.png"))
        _set_theme(page, "dark")
    for label, watched in [*shots, ("admin", w)]:
        problems += [f"{label}: {p}" for p in watched.problems()]
    if os.environ.get("MC_UPDATE_DOCS_SCREENSHOTS"):
        copy_screenshots_to_docs(screenshot_dir)
    assert not problems, "\n".join(problems)


def test_theme_toggle_persists_across_reload(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    w = open_page(data["admin"])
    page = w.page
    page.goto(live_server.url + "/")
    assert page.evaluate("document.documentElement.classList.contains('dark')")  # dark by default
    page.get_by_role("button", name="Alternar tema claro/escuro").click()
    assert not page.evaluate("document.documentElement.classList.contains('dark')")
    # The class is set by the inline <head> script before the stylesheet paints.
    page.add_init_script(
        "document.addEventListener('DOMContentLoaded', () => {"
        " window.__darkAtDCL = document.documentElement.classList.contains('dark'); });"
    )
    page.reload()
    assert page.evaluate("window.__darkAtDCL") is False
    assert not page.evaluate("document.documentElement.classList.contains('dark')")
    page.get_by_role("button", name="Alternar tema claro/escuro").click()
    page.reload()
    assert page.evaluate("document.documentElement.classList.contains('dark')")
    assert not w.problems()


def test_sidebar_is_295_or_80_px_and_slides_in_on_mobile(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    desk = open_page(data["admin"], DESKTOP).page
    desk.goto(live_server.url + "/")
    sidebar = desk.locator("#sidebar")
    assert sidebar.bounding_box()["width"] == 295
    desk.get_by_role("button", name="Recolher menu").click()
    _wait_until(lambda: sidebar.bounding_box()["width"] == 80, 5)
    desk.reload()
    assert desk.locator("#sidebar").bounding_box()["width"] == 80  # remembered
    desk.locator('#sidebar a[aria-label="Missões"]').hover()
    assert desk.locator('#sidebar a[aria-label="Missões"] .nav-tip').is_visible()

    mob = open_page(data["admin"], MOBILE).page
    mob.goto(live_server.url + "/")
    box = mob.locator("#sidebar").bounding_box()
    assert box["x"] + box["width"] <= 0  # off-canvas
    mob.get_by_role("button", name="Abrir menu").click()
    _wait_until(lambda: mob.locator("#sidebar").bounding_box()["x"] == 0, 5)
    assert mob.locator("#sidebar").bounding_box()["width"] == 295
    mob.get_by_role("button", name="Fechar menu").click()
    _wait_until(lambda: mob.locator("#sidebar").bounding_box()["x"] < 0, 5)


def test_create_a_mission_and_watch_its_state_change(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    w = open_page(data["admin"])
    page = w.page
    page.goto(live_server.url + "/missoes/nova/")
    page.get_by_label("Nome").fill("Missão criada no navegador")
    page.get_by_label("URLs").fill("https://loja.com.br/a\nhttps://loja.com.br/b")
    page.get_by_role("button", name="Criar missão").click()
    page.wait_for_url("**/missoes/*/")
    mission = Mission.objects.get(name="Missão criada no navegador")
    assert mission.total_items == 2
    assert page.get_by_text("Missão criada no navegador").first.is_visible()

    page.goto(live_server.url + "/missoes/")
    row = page.locator(f'tr[data-mission-id="{mission.pk}"]')
    assert row.locator("[data-status]").inner_text().strip() == "Na fila"
    Mission.objects.filter(pk=mission.pk).update(status=MissionStatus.EXTRAINDO, done_items=1)
    _wait_until(lambda: row.locator("[data-status]").inner_text().strip() == "Extraindo", 20)
    assert "1/2" in row.inner_text()
    assert not w.problems()


def test_bulk_cancel(open_page: Callable[..., Watched], live_server: Any) -> None:
    data = _seed()
    queued, assigned = data["missions"][1], data["missions"][2]
    w = open_page(data["admin"])
    page = w.page
    page.goto(live_server.url + "/missoes/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_label(f"Selecionar missão #{queued.pk}").check()
    page.get_by_label(f"Selecionar missão #{assigned.pk}").check()
    assert page.locator('[data-bulk-count="bulk-missions"]').inner_text() == "2"
    assert page.locator("[data-bulk-noun]").first.inner_text() == "selecionadas"
    page.get_by_label(f"Selecionar missão #{assigned.pk}").uncheck()
    assert page.locator("[data-bulk-noun]").first.inner_text() == "selecionada"
    page.get_by_label(f"Selecionar missão #{assigned.pk}").check()
    page.get_by_role("button", name="Cancelar").click()
    page.get_by_text("2 missões canceladas.").wait_for()
    statuses = set(
        Mission.objects.filter(pk__in=[queued.pk, assigned.pk]).values_list("status", flat=True)
    )
    assert statuses == {MissionStatus.CANCELADO}
    assert not w.problems()


def test_test_connection_shows_a_result(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    worker = data["worker"]
    worker.base_url = "http://127.0.0.1:9/api/v1"  # discard port: connection refused
    worker.save()
    w = open_page(data["admin"])
    page = w.page
    page.goto(live_server.url + "/recursos/workers/")
    row = page.locator(f'tr[data-resource-id="{worker.pk}"]')
    row.get_by_role("button", name="Testar conexão").click()
    result = row.locator("[data-connection-result]")
    result.wait_for(timeout=30_000)
    assert result.get_attribute("data-connection-result") == "fail"
    assert "Falha" in result.inner_text()
    assert not w.problems()


def test_mission_page_follows_the_live_state_then_stops_polling(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    running = data["running"]
    w = open_page(data["admin"])
    page = w.page
    page.goto(live_server.url + f"/missoes/{running.pk}/")
    indicator = page.locator("[data-live-indicator]")
    assert indicator.get_attribute("data-live-indicator") == "live"
    assert page.get_by_role("button", name="Cancelar").is_visible()
    Mission.objects.filter(pk=running.pk).update(
        status=MissionStatus.FINALIZADO,
        done_items=running.total_items,
        finalizado_at=timezone.now(),
    )
    MissionItem.objects.filter(mission=running).update(status="done")
    _wait_until(lambda: indicator.get_attribute("data-live-indicator") == "ended", 30)
    assert page.get_by_role("button", name="Cancelar").count() == 0
    statuses = page.locator("#itens tbody [data-status]").evaluate_all(
        "els => els.map(e => e.getAttribute('data-status'))"
    )
    assert statuses and set(statuses) == {"done"}
    assert page.locator("#mission-live[data-poll]").count() == 0
    assert not w.problems()


def test_pages_that_do_not_poll_show_no_live_indicator(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    page = open_page(data["admin"]).page
    page.goto(live_server.url + "/recursos/workers/")
    assert page.locator("[data-live-indicator]").count() == 0
    page.goto(live_server.url + "/")
    assert page.locator("[data-live-indicator]").is_visible()


def test_live_indicator_says_stale_when_a_poll_fails(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    page = open_page(data["admin"]).page
    page.goto(live_server.url + "/")
    page.route("**/visao-geral/parcial/", lambda route: route.abort())
    indicator = page.locator("[data-live-indicator]")
    _wait_until(lambda: indicator.get_attribute("data-live-indicator") == "stale", 30)
    assert "Dados desatualizados desde" in indicator.inner_text()
    page.unroute("**/visao-geral/parcial/")
    _wait_until(lambda: indicator.get_attribute("data-live-indicator") == "live", 30)


def test_mobile_drawer_is_inert_when_closed_and_moves_focus(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    w = open_page(data["admin"], MOBILE)
    page = w.page
    page.goto(live_server.url + "/")
    assert page.evaluate("document.getElementById('sidebar').inert") is True
    # No invisible tab stops: tabbing from the menu button never lands in the drawer.
    opener = page.get_by_role("button", name="Abrir menu")
    assert opener.get_attribute("aria-expanded") == "false"
    opener.focus()
    for _ in range(4):
        page.keyboard.press("Tab")
        assert not page.evaluate(
            "document.getElementById('sidebar').contains(document.activeElement)"
        )
    opener.click()
    _wait_until(
        lambda: page.evaluate(
            "document.getElementById('sidebar').contains(document.activeElement)"
        ),
        5,
    )
    assert opener.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Escape")
    _wait_until(lambda: page.evaluate("document.getElementById('sidebar').inert") is True, 5)
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Abrir menu"
    assert not w.problems()


def test_collapsed_sidebar_says_so_after_a_reload(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    page = open_page(data["admin"], DESKTOP).page
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Recolher menu").click()
    page.reload()
    button = page.locator('[data-action="sidebar-collapse"]')
    assert button.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.getElementById('sidebar').inert") is False


def test_disabled_bulk_buttons_look_disabled_and_say_why(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    page = open_page(data["admin"]).page
    page.goto(live_server.url + "/missoes/")
    cancel = page.locator('button[form="bulk-missions"][value="cancel"]')
    assert cancel.is_disabled()
    style = cancel.evaluate(
        "b => { const s = getComputedStyle(b); return [s.cursor, s.backgroundColor, s.opacity]; }"
    )
    assert style[0] == "not-allowed" and style[2] == "1"
    r, g, b = (int(x.strip(" )")) for x in style[1][style[1].index("(") + 1 :].split(",")[:3])
    assert max(r, g, b) - min(r, g, b) < 30  # neutral grey, not a saturated red
    hint = page.locator("#bulk-missions-hint")
    assert hint.is_visible() and "Marque missões" in hint.inner_text()
    assert cancel.get_attribute("aria-describedby") == "bulk-missions-hint"


def _contrast(page: Any, selector: str, against: str) -> float:
    return page.evaluate(
        """([sel, bg]) => {
          const parse = c => { const ctx = document.createElement('canvas').getContext('2d');
            ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1);
            return Array.from(ctx.getImageData(0, 0, 1, 1).data).slice(0, 3); };
          const lum = rgb => { const f = v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
            return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]); };
          const el = document.querySelector(sel);
          const s = getComputedStyle(el);
          const fg = parse(el.tagName === 'rect' ? s.fill : s.backgroundColor);
          const a = lum(fg), b = lum(parse(bg));
          return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        }""",
        [selector, against],
    )


def test_yellow_graphics_reach_3_to_1_in_light_mode(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    page = open_page(data["admin"]).page
    page.goto(live_server.url + "/")
    _set_theme(page, "light")
    # Colours transition when the theme switches: wait for the settled value.
    for selector in ("#overview-live rect.fill-primary-fill", "#overview-live .progress > span"):
        _wait_until(lambda sel=selector: _contrast(page, sel, "#ffffff") >= 3, 5)


TABLE_PAGES = ["/missoes/", "/recursos/workers/", "/recursos/writers/", "/recursos/proxies/"]


def test_tables_become_cards_with_the_state_first_on_a_phone(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    factories.WriterFactory(name="writer-secundario")
    page = open_page(data["admin"], MOBILE).page
    for url in TABLE_PAGES:
        page.goto(live_server.url + url)
        wait_ready(page)
        wrap = page.locator(".table-wrap").first
        assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth + 1"), url  # no sideways scroll
        first = page.locator(".table tbody tr").first.evaluate(
            """tr => { const cells = Array.from(tr.children).filter(td => td.offsetHeight > 0);
                 cells.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
                 return cells.map(td => td.getAttribute('data-label')); }"""
        )
        state = next(x for x in first if x)
        assert state.lower() in ("estado", "saúde"), (url, first)


def test_nothing_clips_in_tables_at_1280_px(
    open_page: Callable[..., Watched], live_server: Any
) -> None:
    data = _seed()
    page = open_page(data["admin"], {"width": 1280, "height": 800}).page
    for url in TABLE_PAGES:
        page.goto(live_server.url + url)
        wait_ready(page)
        clipped = page.evaluate(
            """() => Array.from(document.querySelectorAll('.table .btn, .table-wrap, input[placeholder]'))
                 .filter(el => el.scrollWidth > el.clientWidth + 1)
                 .map(el => el.className + ' ' + (el.textContent || el.placeholder).trim().slice(0, 30))"""
        )
        assert not clipped, (url, clipped)


# Width the placeholder's text needs (canvas, in the input's own font) against the room
# the input gives it (content box): a truncated placeholder is cut mid-word.
PLACEHOLDERS_CUT = """() => Array.from(document.querySelectorAll('input[placeholder]'))
  .filter(el => el.offsetParent !== null)
  .filter(el => { const s = getComputedStyle(el);
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
    const room = el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
    return ctx.measureText(el.placeholder).width > room + 0.5; })
  .map(el => `${el.id}: ${el.placeholder} (${el.clientWidth}px)`)"""


@pytest.mark.parametrize("width", [1280, 1440])
def test_placeholders_are_never_cut(
    open_page: Callable[..., Watched], live_server: Any, width: int
) -> None:
    data = _seed()
    page = open_page(data["admin"], {"width": width, "height": 900}).page
    for url in ["/missoes/", "/recursos/proxies/", "/missoes/nova/"]:
        page.goto(live_server.url + url)
        wait_ready(page)
        assert not page.evaluate(PLACEHOLDERS_CUT), (url, width)
