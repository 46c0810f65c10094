"""The API throttles, keyed on the one client address (mission_control.clientip).

DRF's own `get_ident` reads X-Forwarded-For with its NUM_PROXIES setting and, when the
header has fewer entries than proxies, takes its left-most entry: an address the client
wrote. The throttles here take `client_ip` instead, as the audit log and django-axes
do, so TRUSTED_PROXY_COUNT is the only setting that decides who the client is.
"""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import ScopedRateThrottle as DRFScopedRateThrottle

from mission_control.clientip import client_ip


class ScopedRateThrottle(DRFScopedRateThrottle):
    def get_ident(self, request: Any) -> str:
        # No valid address (a broken REMOTE_ADDR): one shared bucket, never a free pass.
        return client_ip(request) or "unknown"
