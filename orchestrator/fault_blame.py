"""Whose fault a failed session is (pure): only the site's own failures may trip the
site's breaker (`site_breaker.session_failed`); a proxy fault goes to proxy health, a
worker fault to the worker's breaker, our own stalls to nobody (issue #15, case 3).

The answer is recorded on the session's event (`data["fault"]`): "site", "proxy",
"worker" or "ours".
"""

from __future__ import annotations

from orchestrator.states import ErrorCode

SITE, PROXY, WORKER, OURS = "site", "proxy", "worker", "ours"
# A job refused because the worker no longer has the session ready: whatever ended it
# there, the site did nothing (it never got a request of this job).
REFUSED_BY_WORKER = frozenset({"session_not_found", "session_not_ready"})
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
    if code == ErrorCode.SESSION_OPEN_FAILED or remote_code in REFUSED_BY_WORKER:
        return WORKER  # the open, or the job, never reached the site
    if remote_code == "session_busy":
        return OURS  # a job handed to a session still running one: our bookkeeping
    return SITE
