"""Verified geo: what a proxy's connection test says about where it exits.

The check URL (`PROXY_CHECK_URL`) is fetched through the proxy; its answer names the
exit IP and, with a geo-aware service (ipinfo.io/json, ip-api.com/json, Cloudflare's
/cdn-cgi/trace), the exit country. The test records both on the proxy and flags a
mismatch with the declared `country`. A site config with `require_verified_geo` only
gets proxies whose last test confirmed their country (`verified_q`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q

from registry.models import Proxy

BODY_LIMIT = 4096
IP_KEYS = ("ip", "origin", "query", "ip_addr", "address")
COUNTRY_KEYS = ("country_code", "countryCode", "country", "country_iso", "loc")


@dataclass(frozen=True)
class ExitInfo:
    ip: str | None
    country: str


def _ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # httpbin's "origin" may list a chain ("a, b"): the first hop is the client.
    first = value.split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(first))
    except ValueError:
        return None


def _country(value: Any) -> str:
    if isinstance(value, str) and len(value.strip()) == 2 and value.strip().isalpha():
        return value.strip().upper()
    return ""


def parse(body: bytes) -> ExitInfo:
    """Exit IP and country from a JSON object or `key=value` lines; blanks if absent."""
    text = body[:BODY_LIMIT].decode("utf-8", "replace")
    data: dict[str, Any] = {}
    try:
        loaded = json.loads(text)
        if isinstance(loaded, dict):
            data = loaded
    except ValueError:
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                data[key.strip()] = value.strip()
    ip = next((v for v in (_ip(data.get(k)) for k in IP_KEYS) if v), None)
    country = next((c for c in (_country(data.get(k)) for k in COUNTRY_KEYS) if c), "")
    return ExitInfo(ip, country)


def record(proxy: Proxy, ok: bool, body: bytes, now: dt.datetime) -> ExitInfo | None:
    """Store what a successful connection test saw; a failed one changes nothing."""
    if not ok:
        return None
    info = parse(body)
    mismatch = bool(info.country and proxy.country and info.country != proxy.country.upper())
    Proxy.objects.filter(pk=proxy.pk).update(
        exit_ip=info.ip, exit_country=info.country, geo_checked_at=now, geo_mismatch=mismatch
    )
    proxy.refresh_from_db(fields=["exit_ip", "exit_country", "geo_checked_at", "geo_mismatch"])
    return info


def verified_q() -> Q:
    """Proxies whose last connection test confirmed their declared country."""
    return Q(geo_checked_at__isnull=False, geo_mismatch=False, exit_country=F("country")) & ~Q(
        exit_country=""
    )
