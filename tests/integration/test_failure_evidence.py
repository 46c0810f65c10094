"""Failure evidence (worker-api.md v1.1 `snapshot`): the built-in worker fills it for
blocked, http_error, parse_error and timeout, scrubbed of credentials (issue #21)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from localnode import engines, runner
from mission_control import evidence

pytestmark = [pytest.mark.urls("localnode.root_urls")]


def test_a_blocked_page_gets_a_snapshot_with_the_marker_and_no_secrets() -> None:
    html = "<h1>Confirme</h1><div class='g-recaptcha'></div>" + "x" * 100_000
    fetched = engines.classify(
        "https://u:p@shop.example/p/1",
        "https://user:pass@shop.example/p/1?token=abc",
        200,
        html,
        {"Content-Type": "text/html", "Set-Cookie": "sid=1", "Proxy-Authorization": "Basic x"},
    )
    assert fetched.error_code == "blocked" and "g-recaptcha" in fetched.error_message
    snap = runner._snapshot(fetched, fetched.error_code)
    assert snap is not None
    assert snap["final_url"] == "https://***:***@shop.example/p/1?token=***"
    assert snap["http_status"] == 200
    assert snap["headers"] == {"Content-Type": "text/html"}
    assert len(snap["html_excerpt"].encode()) <= evidence.HTML_EXCERPT_BYTES
    assert evidence.block_marker(snap["html_excerpt"]) == "g-recaptcha"
    assert "screenshot_png_base64" not in snap  # the HTTP engine draws nothing


@pytest.mark.parametrize("code", ["blocked", "http_error", "parse_error", "timeout"])
def test_each_contract_code_carries_a_snapshot(code: str) -> None:
    fetched = engines.Fetch("https://e.example/", "https://e.example/", 500, "<p>x</p>", code)
    assert runner._snapshot(fetched, code) is not None


@pytest.mark.parametrize("code", [None, "dns_error", "proxy_error", "robots_disallowed"])
def test_other_outcomes_carry_none(code: str | None) -> None:
    fetched = engines.Fetch("https://e.example/", "https://e.example/", error_code=code)
    assert runner._snapshot(fetched, code) is None


def test_clean_rejects_junk_and_keeps_a_real_png() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 10
    snap = evidence.clean(
        {
            "final_url": "http://a:b@x.example/",
            "http_status": True,
            "headers": {"Authorization": "Bearer t", "Server": "nginx"},
            "html_excerpt": 5,
            "screenshot_png_base64": base64.b64encode(png).decode(),
        }
    )
    assert snap == {
        "final_url": "http://***:***@x.example/",
        "http_status": None,
        "headers": {"Server": "nginx"},
        "html_excerpt": "",
        "screenshot_png_base64": base64.b64encode(png).decode(),
    }
    assert evidence.clean("nope") is None
    assert "screenshot_png_base64" not in (
        evidence.clean({"screenshot_png_base64": "not base64!"}) or {}
    )


@pytest.mark.browser
@pytest.mark.skipif(
    engines.browser_unavailable_reason() is not None,
    reason=f"browser engine unavailable: {engines.browser_unavailable_reason()}",
)
def test_the_browser_engine_screenshots_a_captcha_and_a_404(live_server: Any) -> None:
    engine = engines.BrowserEngine()
    try:
        captcha = engine.fetch(f"{live_server.url}/local/demo/captcha/", timeout_s=30)
        missing = engine.fetch(f"{live_server.url}/local/demo/status/404/", timeout_s=30)
    finally:
        engine.close()
    assert captcha.error_code == "blocked"
    for fetched in (captcha, missing):
        assert fetched.screenshot_png and fetched.screenshot_png.startswith(b"\x89PNG")
        snap = runner._snapshot(fetched, fetched.error_code)
        assert snap and base64.b64decode(snap["screenshot_png_base64"]).startswith(b"\x89PNG")
    assert "g-recaptcha" in (runner._snapshot(captcha, "blocked") or {})["html_excerpt"]
