"""Whose fault a failed session is (pure): only the site's own failures may trip the
site's breaker (`site_breaker.session_failed`); a proxy fault goes to proxy health, a
worker fault to the worker's breaker, our own stalls to nobody (issue #15, case 3).

The answer is recorded on the session's event (`data["fault"]`): "site", "proxy",
"worker" or "ours".
"""

from __future__ import annotations

from orchestrator.states import ErrorCode

SITE, PROXY, WORKER, OURS = "site", "proxy", "worker", "ours"
# Faults that are never the site's: the breaker of a site ignores them.
NOT_THE_SITES = (PROXY, WORKER, OURS)


def session_fault(code: ErrorCode, remote_code: str = "", *, infra: bool = False) -> str:
    """Who failed the session ended with `code` (`remote_code`: the worker's
    `error.code`, e.g. `proxy_connect_failed`)."""
    if infra:
        return WORKER
    if remote_code.startswith("proxy_") or code == ErrorCode.SESSION_PROVIDER_ERROR:
        # The worker could not reach the site through this proxy, or the provider
        # could not start a browser with it.
        return PROXY
    if code == ErrorCode.SESSION_OPEN_FAILED:
        return WORKER  # the open never reached the site
    return SITE
