"""The local worker's engines: result classification, the HTTP engine (through
httpx.MockTransport) and the browser engine (a real Chromium, when installed)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from localnode import engines
from localnode.demo import demo_urls

pytestmark = [pytest.mark.urls("localnode.root_urls")]

_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mock sites (*.example) resolve to a public address, as real shops would:
    the outbound policy resolves every target before the (mock) transport sees it."""

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".example"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        return _real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (200, "<html><body>fine</body></html>", None),
        (204, "", None),
        (403, "<h1>Forbidden</h1>", "blocked"),
        (429, "slow down", "blocked"),
        (200, '<div class="g-recaptcha"></div>', "blocked"),
        (200, "<div id='cf-challenge'></div>", "blocked"),
        (200, "<h1>Access Denied</h1>", "blocked"),
        (404, "not here", "http_error"),
        (500, "oops", "http_error"),
    ],
)
def test_responses_are_classified(status: int, body: str, code: str | None) -> None:
    fetched = engines.classify("https://e.com/", "https://e.com/", status, body)
    assert fetched.error_code == code
    assert fetched.http_status == status


@pytest.mark.parametrize(
    ("message", "via_proxy", "code"),
    [
        ("[Errno -2] Name or service not known", False, "dns_error"),
        ("[Errno -3] Temporary failure in name resolution", False, "dns_error"),
        ("net::ERR_NAME_NOT_RESOLVED at https://x.invalid/", False, "dns_error"),
        ("[Errno 111] Connection refused", True, "proxy_error"),
        ("net::ERR_PROXY_CONNECTION_FAILED", False, "proxy_error"),
        ("[Errno 111] Connection refused", False, "http_error"),
    ],
)
def test_network_errors_are_classified(message: str, via_proxy: bool, code: str) -> None:
    assert (
        engines.classify_network_error("https://x/", message, via_proxy=via_proxy).error_code
        == code
    )


def test_the_http_engine_follows_redirects_with_a_browser_user_agent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/old":
            return httpx.Response(301, headers={"Location": "https://shop.example/new"})
        return httpx.Response(200, html="<html><title>New</title></html>")

    engine = engines.HttpEngine(transport=httpx.MockTransport(handler))
    fetched = engine.fetch("https://shop.example/old", timeout_s=5)
    engine.close()
    assert fetched.ok and fetched.http_status == 200
    assert fetched.final_url == "https://shop.example/new"
    assert "Mozilla/5.0" in seen[0].headers["User-Agent"]


def test_the_http_engine_turns_exceptions_into_error_codes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        host = request.headers["Host"]  # the URL carries the pinned address
        if host == "slow.example":
            raise httpx.ReadTimeout("read timed out", request=request)
        if host == "proxy.example":
            raise httpx.ProxyError("502 Bad Gateway from proxy", request=request)
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    engine = engines.HttpEngine(transport=httpx.MockTransport(handler))
    codes = {
        host: engine.fetch(f"https://{host}/", timeout_s=1).error_code
        for host in ("slow.example", "proxy.example", "gone.example")
    }
    assert codes == {
        "slow.example": "timeout",
        "proxy.example": "proxy_error",
        "gone.example": "dns_error",
    }


def test_playwright_proxy_splits_credentials() -> None:
    assert engines.playwright_proxy("http://us%40r:p%3Ass@203.0.113.7:8000") == {
        "server": "http://203.0.113.7:8000",
        "username": "us@r",
        "password": "p:ss",
    }


@pytest.mark.browser
@pytest.mark.skipif(
    engines.browser_unavailable_reason() is not None,
    reason=f"browser engine unavailable: {engines.browser_unavailable_reason()}",
)
def test_the_browser_engine_renders_a_demo_page(live_server: Any) -> None:
    engine = engines.BrowserEngine()
    try:
        ok = engine.fetch(demo_urls(live_server.url, 1)[0], timeout_s=30)
        missing = engine.fetch(f"{live_server.url}/local/demo/status/404/", timeout_s=30)
        throttled = engine.fetch(f"{live_server.url}/local/demo/p/97/", timeout_s=30)
    finally:
        engine.close()
    assert ok.ok and ok.http_status == 200 and 'class="price"' in ok.html
    assert (missing.error_code, missing.http_status) == ("http_error", 404)
    assert (throttled.error_code, throttled.http_status) == ("blocked", 429)
