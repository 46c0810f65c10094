"""How the local worker fetches a page: plain HTTP (httpx) or a real browser (Playwright
driving the system Chromium). Both turn every outcome into a `Fetch`; none raises for
a failure of the page, the proxy or the network."""

from __future__ import annotations

import importlib.util
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from mission_control import outbound

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7",
}
DEFAULT_TIMEOUT_S = 60.0
# Only the start of a body is searched for block markers.
_MARKER_SCAN_CHARS = 200_000
_BLOCK_MARKERS = re.compile(r"captcha|g-recaptcha|cf-challenge|access denied", re.IGNORECASE)
_DNS_HINTS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "getaddrinfo failed",
    "no address associated",
    "name resolution",
    "err_name_not_resolved",
)
_PROXY_HINTS = ("err_proxy", "err_tunnel_connection_failed", "proxy")


@dataclass(frozen=True)
class Fetch:
    """The outcome of one navigation. `error_code` is None when the page is usable."""

    url: str
    final_url: str
    http_status: int | None = None
    html: str = ""
    error_code: str | None = None
    error_message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    screenshot_png: bytes | None = None  # browser engines, failed pages only

    @property
    def ok(self) -> bool:
        return self.error_code is None


class EngineUnavailable(Exception):
    """The engine cannot run here (no Playwright, no Chromium, bad proxy URL)."""


class Engine(Protocol):
    def fetch(self, url: str, *, timeout_s: float, wait_until: str = "load") -> Fetch: ...

    def close(self) -> None: ...


def classify(
    url: str, final_url: str, status: int, body: str, headers: dict[str, str] | None = None
) -> Fetch:
    """Sort a response that arrived: usable, blocked or an HTTP error."""
    head = dict(headers or {})
    marker = _BLOCK_MARKERS.search(body[:_MARKER_SCAN_CHARS])
    if status in (403, 429) or marker:
        why = f"blocked (HTTP {status}" + (f", marker {marker.group(0)!r})" if marker else ")")
        return Fetch(url, final_url, status, body, "blocked", why, head)
    if status >= 400:
        return Fetch(url, final_url, status, body, "http_error", f"HTTP {status}", head)
    return Fetch(url, final_url, status, body, headers=head)


def classify_network_error(url: str, message: str, *, via_proxy: bool) -> Fetch:
    lowered = message.lower()
    if any(hint in lowered for hint in _DNS_HINTS) and not (via_proxy and "proxy" in lowered):
        return Fetch(url, url, error_code="dns_error", error_message=message[:500])
    if via_proxy or any(hint in lowered for hint in _PROXY_HINTS):
        return Fetch(url, url, error_code="proxy_error", error_message=message[:500])
    return Fetch(url, url, error_code="http_error", error_message=message[:500])


class HttpEngine:
    def __init__(
        self,
        proxy_url: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.via_proxy = bool(proxy_url)
        try:
            inner = transport or httpx.HTTPTransport(proxy=proxy_url or None, trust_env=False)
            self.client = httpx.Client(
                # The outbound policy checks and pins every request and every redirect hop.
                transport=outbound.GuardedTransport(inner, via_proxy=self.via_proxy),
                headers={**DEFAULT_HEADERS, **(headers or {})},
                follow_redirects=True,
                max_redirects=10,
                # The session's proxy (or a direct connection) is the only route.
                trust_env=False,
                timeout=DEFAULT_TIMEOUT_S,
            )
        except (ValueError, ImportError, httpx.InvalidURL) as exc:
            raise EngineUnavailable(f"cannot use proxy: {exc}") from exc

    def fetch(self, url: str, *, timeout_s: float, wait_until: str = "load") -> Fetch:
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
        try:
            response = self.client.get(url, timeout=timeout)
        except outbound.Unresolved as exc:
            return Fetch(url, url, error_code="dns_error", error_message=str(exc))
        except outbound.Refused as exc:
            return Fetch(url, url, error_code="http_error", error_message=f"refused: {exc}")
        except httpx.InvalidURL:
            return Fetch(url, url, error_code="http_error", error_message="refused: invalid URL")
        except httpx.TimeoutException as exc:
            return Fetch(url, url, error_code="timeout", error_message=str(exc) or "timed out")
        except httpx.ProxyError as exc:
            return Fetch(url, url, error_code="proxy_error", error_message=str(exc)[:500])
        except httpx.TooManyRedirects as exc:
            return Fetch(url, url, error_code="http_error", error_message=str(exc)[:500])
        except (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return classify_network_error(url, str(exc), via_proxy=self.via_proxy)
        except httpx.HTTPError as exc:
            return Fetch(url, url, error_code="http_error", error_message=str(exc)[:500])
        try:
            body = response.text
        except (UnicodeDecodeError, LookupError) as exc:
            return Fetch(
                url,
                str(response.url),
                response.status_code,
                "",
                "parse_error",
                str(exc)[:500],
                dict(response.headers),
            )
        return classify(url, str(response.url), response.status_code, body, dict(response.headers))

    def close(self) -> None:
        self.client.close()


def browser_unavailable_reason() -> str | None:
    """Why the browser engine cannot run here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM_PATH} (apt-get install chromium)"
    return None


def playwright_proxy(proxy_url: str) -> dict[str, str]:
    parts = urlsplit(proxy_url)
    if not parts.hostname or not parts.scheme:
        raise EngineUnavailable("proxy URL needs a scheme and a host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    server = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    proxy = {"server": server}
    if parts.username:
        proxy["username"] = unquote(parts.username)
    if parts.password:
        proxy["password"] = unquote(parts.password)
    return proxy


class BrowserEngine:
    """One Chromium and one browser context (with the session's proxy) per engine.

    Playwright's sync API runs an event loop on the thread that started it, and Django
    refuses ORM calls on a thread with a running loop; so every Playwright call runs on
    a private thread of the engine and the caller's thread stays free for the ORM.
    """

    def __init__(self, proxy_url: str | None = None, headers: dict[str, str] | None = None):
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailable(reason)
        self.via_proxy = bool(proxy_url)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="localnode-browser")
        try:
            self._thread.submit(self._start, proxy_url, headers or {}).result()
        except BaseException:
            self._thread.shutdown(wait=True)
            raise

    @staticmethod
    def unavailable_reason() -> str | None:
        return browser_unavailable_reason()

    def _start(self, proxy_url: str | None, headers: dict[str, str]) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS
            )
            extra = {k: v for k, v in headers.items() if k.lower() != "user-agent"}
            agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), USER_AGENT)
            context_options: dict[str, Any] = {"user_agent": agent, "locale": "pt-BR"}
            if extra:
                context_options["extra_http_headers"] = extra
            if proxy_url:
                context_options["proxy"] = playwright_proxy(proxy_url)
            self._context = self._browser.new_context(**context_options)
            # Every request of the page (navigations, redirects, subresources) obeys the
            # outbound policy; Chromium resolves names itself, so this checks, not pins.
            self._context.route("**/*", _guard_route)
        except PlaywrightError as exc:
            self._playwright.stop()
            raise EngineUnavailable(f"cannot start Chromium: {exc}") from exc
        except BaseException:
            self._playwright.stop()
            raise

    def fetch(self, url: str, *, timeout_s: float, wait_until: str = "load") -> Fetch:
        return self._thread.submit(self._fetch, url, timeout_s, wait_until).result()

    def _fetch(self, url: str, timeout_s: float, wait_until: str) -> Fetch:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        if wait_until not in ("load", "domcontentloaded", "networkidle", "commit"):
            wait_until = "load"
        page = self._context.new_page()
        try:
            response = page.goto(url, timeout=timeout_s * 1000, wait_until=wait_until)  # type: ignore[arg-type]
            html = page.content()
            status = response.status if response is not None else 200
            headers = dict(response.headers) if response is not None else {}
            fetched = classify(url, page.url, status, html, headers)
            return fetched if fetched.ok else replace(fetched, screenshot_png=_shot(page))
        except PlaywrightTimeout as exc:
            return Fetch(
                url,
                page.url if page.url.startswith("http") else url,
                error_code="timeout",
                error_message=str(exc)[:500],
                screenshot_png=_shot(page),
            )
        except PlaywrightError as exc:
            return classify_network_error(url, str(exc), via_proxy=self.via_proxy)
        finally:
            page.close()

    def close(self) -> None:
        try:
            self._thread.submit(self._close).result()
        finally:
            self._thread.shutdown(wait=True)

    def _close(self) -> None:
        try:
            self._context.close()
            self._browser.close()
        finally:
            self._playwright.stop()


class RemoteBrowserEngine(BrowserEngine):
    """A browser somewhere else (a Browserbase session), reached over CDP at
    `connect_url`. Its proxy is the remote side's business; the pages are fetched and
    classified exactly as with the local Chromium. Closing only disconnects: the
    remote session lives on until the worker releases it."""

    def __init__(self, connect_url: str, headers: dict[str, str] | None = None):
        self.connect_url = connect_url
        super().__init__(None, headers)

    @staticmethod
    def unavailable_reason() -> str | None:
        # Only Playwright is needed here: the browser runs at the provider.
        if importlib.util.find_spec("playwright") is None:
            return "the playwright package is not installed"
        return None

    def _start(self, proxy_url: str | None, headers: dict[str, str]) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.connect_over_cdp(
                self.connect_url, timeout=30_000
            )
            contexts = self._browser.contexts
            self._context = contexts[0] if contexts else self._browser.new_context()
            if headers:
                self._context.set_extra_http_headers(headers)
        except PlaywrightError as exc:
            self._playwright.stop()
            # The signed connect URL is a secret: the message names no URL.
            raise EngineUnavailable(f"cannot connect to the remote browser: {exc.name}") from None
        except BaseException:
            self._playwright.stop()
            raise

    def _close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()


def _shot(page: Any) -> bytes | None:
    """A viewport PNG of a failed page, as evidence; None when the page cannot draw."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        return bytes(page.screenshot(type="png", timeout=5_000))
    except PlaywrightError:
        return None


def _guard_route(route: Any) -> None:
    url = route.request.url
    scheme = url.partition(":")[0].lower()
    if scheme in ("data", "blob", "about"):
        route.continue_()
        return
    try:
        outbound.check_url(url)
    except outbound.Refused:
        route.abort("blockedbyclient")
        return
    route.continue_()


def open_engine(
    engine: str,
    proxy_url: str | None,
    headers: dict[str, str] | None = None,
    *,
    connect_url: str = "",
) -> Engine:
    if connect_url:
        return RemoteBrowserEngine(connect_url, headers)
    if engine == "browser":
        return BrowserEngine(proxy_url, headers)
    return HttpEngine(proxy_url, headers=headers)
