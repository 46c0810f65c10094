"""Failure evidence (worker-api.md v1.1 `snapshot`), scrubbed of credentials.

Used by the built-in worker when it builds a snapshot and by the orchestrator before it
stores one it received: neither proxy credentials in URLs nor secret headers are kept.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from mission_control.logging import redact

HTML_EXCERPT_BYTES = 64 * 1024
SCREENSHOT_MAX_BYTES = 4 * 1024 * 1024
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "proxy-authenticate",
    }
)
BLOCK_MARKERS = re.compile(r"captcha|g-recaptcha|cf-challenge|access denied", re.IGNORECASE)
SNAPSHOT_CODES = frozenset({"blocked", "http_error", "parse_error", "timeout"})


def scrub_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k)[:200]: redact(str(v))[:2000]
        for k, v in list(headers.items())[:100]
        if str(k).lower() not in SECRET_HEADERS
    }


def excerpt(html: str) -> str:
    """The first 64 KiB (UTF-8) of the page, never cut inside a character."""
    raw = html.encode("utf-8", "replace")[:HTML_EXCERPT_BYTES]
    return redact(raw.decode("utf-8", "ignore"))


def block_marker(html: str) -> str:
    found = BLOCK_MARKERS.search(html[:200_000])
    return found.group(0).lower() if found else ""


def build(
    final_url: str,
    http_status: int | None,
    headers: Mapping[str, Any],
    html: str,
    screenshot_png: bytes | None = None,
) -> dict[str, Any]:
    """A contract `snapshot` object."""
    snapshot: dict[str, Any] = {
        "final_url": redact(final_url)[:2048],
        "http_status": http_status,
        "headers": scrub_headers(headers),
        "html_excerpt": excerpt(html),
    }
    if screenshot_png and len(screenshot_png) <= SCREENSHOT_MAX_BYTES:
        snapshot["screenshot_png_base64"] = base64.b64encode(screenshot_png).decode("ascii")
    return snapshot


def png(snapshot: Mapping[str, Any]) -> bytes:
    """The screenshot of a built (or cleaned) snapshot as PNG bytes; b"" when none."""
    shot = snapshot.get("screenshot_png_base64")
    if not isinstance(shot, str) or not shot:
        return b""
    try:
        return base64.b64decode(shot, validate=True)
    except (binascii.Error, ValueError):
        return b""


def clean(snapshot: Any) -> dict[str, Any] | None:
    """A snapshot received from any worker, reshaped and scrubbed; None when unusable."""
    if not isinstance(snapshot, dict):
        return None
    status = snapshot.get("http_status")
    headers = snapshot.get("headers")
    html = snapshot.get("html_excerpt")
    shot = snapshot.get("screenshot_png_base64")
    png: bytes | None = None
    if isinstance(shot, str) and len(shot) <= SCREENSHOT_MAX_BYTES * 4 // 3 + 4:
        try:
            png = base64.b64decode(shot, validate=True)
        except (binascii.Error, ValueError):
            png = None
    return build(
        str(snapshot.get("final_url") or ""),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        headers if isinstance(headers, dict) else {},
        html if isinstance(html, str) else "",
        png if png and png.startswith(b"\x89PNG") else None,
    )
