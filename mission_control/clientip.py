"""The client's address, the one place that decides it: the audit log, django-axes
(login lockouts) and DRF throttles all use `client_ip`.

Behind `settings.TRUSTED_PROXY_COUNT` reverse proxies (the TLS proxy of
docs/deploy.md is one), each proxy appends the address it saw to X-Forwarded-For, so
the client is the entry that many places from the right; anything left of it was
written by the client and is ignored. With 0 (the default), REMOTE_ADDR is the client
and X-Forwarded-For is ignored entirely.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def _valid(value: str) -> str | None:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request: Any) -> str | None:
    meta = getattr(request, "META", None) or {}
    remote = _valid(str(meta.get("REMOTE_ADDR") or ""))
    count = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if count <= 0:
        return remote
    hops = [h for h in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if h.strip()]
    if len(hops) < count:
        return remote  # fewer proxies than configured: not through them
    return _valid(hops[-count]) or remote
