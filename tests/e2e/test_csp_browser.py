"""The Content-Security-Policy in a real Chromium: the Django admin (login, index, a
changelist, change forms with their widgets and an add-another popup, an action's
confirmation page), the Swagger UI (renders the operations, "Try it out" runs a GET
with the session) and the dashboard's interactive parts run without one violation.

Violations are caught twice: `securitypolicyviolation` events, recorded by an init
script (injected by the browser, so the policy cannot refuse it), and the console's
"Refused to ..." messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.models import Mission, MissionItem
from orchestrator.states import MissionStatus
from registry.models import SiteConfig, Writer
from tests import factories
from tests.e2e.conftest import Watched, wait_ready

pytestmark = [pytest.mark.browser]

PASSWORD = "senha-forte-123"  # tests.factories.UserFactory
CSP_CONSOLE = re.compile(r"Refused to|Content[- ]Security[- ]Policy", re.IGNORECASE)
RECORDER = """
(() => {
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const text = `${e.effectiveDirective} refused ${e.blockedURI || "inline"}`
      + ` @ ${e.sourceFile || document.location.href}:${e.lineNumber}`
      + (e.sample ? ` sample=${JSON.stringify(e.sample)}` : "");
    window.__cspViolations.push(text);
    if (window.__mcCspViolation) window.__mcCspViolation(text);
  }, true);
})();
"""


@dataclass
class CspWatch:
    """Every CSP violation seen in one browser context, popups included."""

    context: Any
    violations: list[str] = field(default_factory=list)
    pages: list[Watched] = field(default_factory=list)
    # The admin has no <link rel="icon">: Chromium's own /favicon.ico request is a 404
    # that only the console reports. Not a page error.
    favicon_misses: set[str] = field(default_factory=set)

    def watch(self, page: Any) -> None:
        def on_console(msg: Any) -> None:
            if CSP_CONSOLE.search(msg.text):
                self.violations.append(f"console {msg.type}: {msg.text} @ {page.url}")
            elif msg.location.get("url", "").endswith("/favicon.ico"):
                self.favicon_misses.add(f"console: {msg.text} @ {page.url}")

        page.on("console", on_console)

    def settle(self, page: Any) -> list[str]:
        """What the page's own record holds, once the events of this frame are out."""
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        recorded: list[str] = page.evaluate("() => window.__cspViolations || []")
        return recorded

    def assert_clean(self, page: Any) -> None:
        recorded = self.settle(page)
        problems = [*self.violations, *(v for v in recorded if v not in self.violations)]
        for w in self.pages:
            problems += [p for p in w.problems() if p not in self.favicon_misses]
        assert not problems, "\n".join(problems)


@pytest.fixture
def csp_page(
    open_page: Callable[..., Watched],
) -> Iterator[Callable[..., tuple[Watched, CspWatch]]]:
    """csp_page(user=None) → (a Watched page, its CspWatch), recording from the start."""

    def make(user: Any = None) -> tuple[Watched, CspWatch]:
        w = open_page(user)
        context = w.page.context
        csp = CspWatch(context, pages=[w])
        context.expose_binding(
            "__mcCspViolation", lambda source, text: csp.violations.append(f"event: {text}")
        )
        context.add_init_script(RECORDER)
        csp.watch(w.page)
        context.on("page", csp.watch)  # admin popups
        return w, csp

    yield make


def _superuser() -> Any:
    user = factories.UserFactory(username="root.admin", role="admin")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def _missions() -> dict[str, Any]:
    writer = factories.WriterFactory(name="writer-principal", is_default=True)
    worker = factories.WorkerFactory(name="worker-sp-1", max_sessions=8, active_sessions=5)
    factories.ProxyFactory(type="residential", country="BR")
    factories.SiteConfigFactory(domain="*")
    factories.SiteConfigFactory(domain="loja.com.br", proxy_types=["residential"])
    running = factories.MissionFactory(
        name="Catálogo de eletrônicos",
        status=MissionStatus.EXTRAINDO,
        domain="loja.com.br",
        n_items=10,
        writer=writer,
    )
    pks = list(MissionItem.objects.filter(mission=running).values_list("pk", flat=True)[:4])
    MissionItem.objects.filter(pk__in=pks).update(status="done")
    Mission.objects.filter(pk=running.pk).update(done_items=4)
    queued = factories.MissionFactory(name="Preços diários", n_items=5, writer=writer)
    return {"writer": writer, "worker": worker, "running": running, "queued": queued}


def test_django_admin_pages_and_widgets_raise_no_violation(
    csp_page: Callable[..., tuple[Watched, CspWatch]], live_server: Any
) -> None:
    user = _superuser()
    data = _missions()
    w, csp = csp_page()
    page = w.page
    base = live_server.url + "/admin/"

    page.goto(base + "login/")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()
    page.wait_for_url(base)
    assert page.locator("#site-name .mc-brand-mark").is_visible()  # the nonced <style>
    page.locator("button.theme-toggle").first.click()  # admin's theme.js

    page.goto(base + "orchestrator/mission/?q=Cat")
    assert page.locator("#result_list tbody tr").count() == 1
    page.goto(base + "orchestrator/mission/")
    page.locator("#changelist-filter").wait_for()
    page.locator("#action-toggle").check()  # admin's actions.js
    assert page.locator(".action-counter").inner_text().startswith("2")

    # A change form: readonly tables, a collapsed fieldset (<details>), a related widget.
    page.goto(base + f"orchestrator/mission/{data['running'].pk}/change/")
    page.locator("fieldset.collapse summary").first.click()
    assert page.locator("fieldset.collapse[open], details[open]").count() >= 1

    # The add form's writer select opens an add-another popup; the popup's response
    # page (popup_response.js) fills the select back in the opener.
    page.goto(base + "orchestrator/mission/add/")
    with page.expect_popup() as popup_info:
        page.locator("#add_id_writer").click()
    popup = popup_info.value
    popup.wait_for_load_state()
    popup.locator("#id_name").fill("writer-popup")
    popup.locator("#id_base_url").fill("http://127.0.0.1:19999/api/v1")
    with popup.expect_event("close"):
        popup.locator("[name=_save]").click()
    new_writer = Writer.objects.get(name="writer-popup")
    assert page.locator("#id_writer").input_value() == str(new_writer.pk)

    page.goto(base + "registry/proxy/add/")
    assert page.locator("#id_password[type=password]").is_visible()
    page.goto(base + "registry/siteconfig/add/")
    page.locator("#id_domain").wait_for()

    # delete_selected's confirmation page and its "No, take me back" (cancel.js).
    page.goto(base + "registry/siteconfig/")
    shop = SiteConfig.objects.get(domain="loja.com.br")
    page.locator(f"input.action-select[value='{shop.pk}']").check()
    page.locator("select[name=action]").select_option("delete_selected")
    page.locator("button[name=index]").click()
    page.locator("form input[name=post][value=yes]").wait_for(state="attached")
    page.locator("a.cancel-link").click()
    page.wait_for_url(base + "registry/siteconfig/")
    assert SiteConfig.objects.filter(pk=shop.pk).exists()
    csp.assert_clean(page)


def test_api_docs_render_the_operations_and_try_a_get_with_the_session(
    csp_page: Callable[..., tuple[Watched, CspWatch]], live_server: Any
) -> None:
    user = _superuser()
    data = _missions()
    w, csp = csp_page(user)
    page = w.page
    page.goto(live_server.url + "/api/docs/")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() > 10

    op = page.locator(".opblock-get", has=page.locator('[data-path="/api/missions/"]')).first
    op.locator(".opblock-summary").click()
    op.get_by_role("button", name="Try it out").click()
    op.get_by_role("button", name="Execute").click()
    status = op.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = op.locator(".live-responses-table .response-col_description pre").first.inner_text()
    assert data["running"].name in body
    csp.assert_clean(page)


def test_dashboard_interactions_raise_no_violation_and_bars_get_their_width(
    csp_page: Callable[..., tuple[Watched, CspWatch]], live_server: Any
) -> None:
    user = factories.UserFactory(username="ana.admin", role="admin")
    data = _missions()
    login, login_csp = csp_page()
    login.page.goto(live_server.url + "/login/")
    login_csp.assert_clean(login.page)
    # The recorder works: an inline style="" attribute is refused and reported.
    login.page.evaluate(
        "html => document.body.insertAdjacentHTML('beforeend', html)", '<p style="color:red">x</p>'
    )
    assert any("style-src-attr" in v for v in login_csp.settle(login.page))

    w, csp = csp_page(user)
    page = w.page
    url = live_server.url

    def bar_widths(selector: str = "[data-bar]") -> list[tuple[float, float]]:
        widths: list[tuple[float, float]] = page.eval_on_selector_all(
            selector,
            "els => els.map(e => [parseFloat(e.dataset.bar), e.getBoundingClientRect().width])",
        )
        return widths

    def assert_bars_painted() -> None:
        widths = bar_widths()
        assert widths, "no progress bar on " + page.url
        assert any(value > 0 for value, _ in widths)
        for value, width in widths:
            assert (width > 0) == (value > 0), (value, width, page.url)

    page.goto(url + "/")
    assert_bars_painted()
    page.get_by_role("button", name="Alternar tema claro/escuro").click()
    assert not page.evaluate("document.documentElement.classList.contains('dark')")
    sidebar = page.locator("#sidebar")
    page.get_by_role("button", name="Recolher menu").click()
    page.wait_for_function("() => document.getElementById('sidebar').offsetWidth === 80")
    assert sidebar.bounding_box()["width"] == 80

    # The filter form (GET) and the rows' bars, before and after a live swap.
    page.goto(url + "/missoes/")
    page.locator("#f-status").select_option(MissionStatus.EXTRAINDO)
    page.get_by_role("button", name="Filtrar").click()
    page.wait_for_url(re.compile(r"status=EXTRAINDO"))
    rows = page.locator("tr[data-mission-id]")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-mission-id") == str(data["running"].pk)
    assert_bars_painted()
    page.evaluate(
        "() => new Promise(r => {"
        " const live = document.getElementById('missions-live');"
        " live.addEventListener('mc:swapped', () => r(), {once: true});"
        " live.removeAttribute('data-etag'); })"
    )
    assert_bars_painted()

    # A confirm dialog opens and closes (showModal through app.js).
    page.goto(url + f"/missoes/{data['running'].pk}/")
    assert_bars_painted()
    dialog = page.locator("#cancel-dialog")
    page.get_by_role("button", name="Cancelar", exact=True).click()
    assert dialog.is_visible()
    dialog.get_by_role("button", name="Voltar").click()
    assert not dialog.is_visible()

    page.goto(url + "/execucao/")
    assert_bars_painted()  # worker-sp-1: 5 of 8 sessions
    for path in ("/missoes/nova/", "/recursos/workers/", "/estrategias/", "/configuracoes/"):
        page.goto(url + path)
        wait_ready(page)
    csp.assert_clean(page)
