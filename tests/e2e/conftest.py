"""Browser fixtures for the dashboard tests: a Chromium driven by Playwright (Debian's
/usr/bin/chromium; never `playwright install`), pages logged in per role, collectors
of console errors and failed requests, axe-core and screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MC_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
AXE_PATHS = [ROOT / "node_modules/axe-core/axe.min.js", Path(__file__).parent / "vendor/axe.min.js"]
SCREENSHOT_DIR = Path(os.environ.get("MC_SCREENSHOT_DIR", ROOT / "var/screenshots"))
DESKTOP = {"width": 1440, "height": 900}
MOBILE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made
    # by the test itself are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
    except Exception as exc:  # no display libs, sandbox refused, ...
        manager.stop()
        pytest.skip(f"Playwright cannot launch {CHROMIUM}: {exc}")
    yield browser
    browser.close()
    manager.stop()


@dataclass
class Watched:
    """A page plus what went wrong on it."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [*self.console_errors, *self.failed_requests]

    def clear(self) -> None:
        self.console_errors.clear()
        self.failed_requests.clear()


def _watch(page: Any) -> Watched:
    watched = Watched(page)

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            watched.console_errors.append(f"console: {msg.text} @ {page.url}")

    def on_failed(request: Any) -> None:
        failure = request.failure or ""
        # Navigation away aborts in-flight polls; that is not a failure.
        if "ERR_ABORTED" not in failure:
            watched.failed_requests.append(f"failed: {request.url} {failure}")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            watched.failed_requests.append(f"HTTP {response.status}: {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.console_errors.append(f"pageerror: {exc}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    return watched


@pytest.fixture
def open_page(
    chromium: Any, live_server: Any, transactional_db: None
) -> Iterator[Callable[..., Watched]]:
    """open_page(user=None, viewport=DESKTOP) → a Watched page, logged in as `user`."""
    from django.test import Client

    contexts: list[Any] = []

    def make(user: Any = None, viewport: dict[str, int] | None = None) -> Watched:
        context = chromium.new_context(
            viewport=viewport or DESKTOP,
            locale="pt-BR",
            timezone_id="America/Sao_Paulo",
            # No colour transitions: axe must measure the settled theme, not a frame of
            # the switch.
            reduced_motion="reduce",
        )
        contexts.append(context)
        if user is not None:
            client = Client()
            client.force_login(user)
            context.add_cookies(
                [
                    {
                        "name": "sessionid",
                        "value": client.cookies["sessionid"].value,
                        "url": live_server.url,
                    }
                ]
            )
        page = context.new_page()
        # Waits (load states, locators) end as soon as their condition holds; the limit
        # only turns a hang into a failure, so it is generous for a loaded 2-core box.
        page.set_default_timeout(60_000)
        return _watch(page)

    yield make
    for context in contexts:
        context.close()


def wait_ready(page: Any) -> None:
    """The page has loaded and its main landmark is there. Not `networkidle`: pages that
    poll (every 5 s) may never be idle for 500 ms on a loaded machine."""
    page.wait_for_load_state("load")
    page.locator("#main").wait_for(state="attached")
    page.evaluate("() => document.fonts.ready.then(() => true)")


def _axe_source() -> str:
    for path in AXE_PATHS:
        if path.exists():
            return path.read_text()
    pytest.skip("axe-core not found (npm ci, or tests/e2e/vendor/axe.min.js)")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def axe() -> Callable[[Any], list[dict[str, Any]]]:
    """axe(page) → serious and critical violations on the page as it is now."""
    source = _axe_source()

    def run(page: Any) -> list[dict[str, Any]]:
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            # Evaluated through the DevTools protocol: an injected <script> tag would
            # be refused by the page's Content-Security-Policy.
            page.evaluate(source)
        return page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ['violations']});
                return r.violations
                  .filter(v => v.impact === 'serious' || v.impact === 'critical')
                  .map(v => ({id: v.id, impact: v.impact, help: v.help,
                              nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')
                                + (n.any[0] ? ` (${n.any[0].message})` : ''))}));
            }"""
        )

    return run


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


def copy_screenshots_to_docs(src: Path) -> None:
    """Refresh docs/screenshots from a run (MC_UPDATE_DOCS_SCREENSHOTS=1)."""
    docs = ROOT / "docs/screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for png in src.glob("*.png"):
        shutil.copy2(png, docs / png.name)
