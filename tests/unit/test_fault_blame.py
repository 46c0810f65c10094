"""Whose fault a failed session is (issue #15, case 3): only the site's own failures
may count for its breaker."""

from __future__ import annotations

import pytest

from orchestrator import fault_blame
from orchestrator.states import ErrorCode


@pytest.mark.parametrize(
    ("code", "remote_code", "infra", "fault"),
    [
        (ErrorCode.SESSION_FAILED, "proxy_connect_failed", False, "proxy"),
        (ErrorCode.SESSION_PROVIDER_ERROR, "", False, "proxy"),
        (ErrorCode.SESSION_OPEN_FAILED, "", False, "worker"),
        (ErrorCode.SESSION_DISCONNECTED, "", True, "worker"),
        # A job refused because the worker no longer has the session ready never
        # reached the site (a proxy-failed session refusing its next job, seen in #15).
        (ErrorCode.SESSION_FAILED, "session_not_ready", False, "worker"),
        (ErrorCode.SESSION_FAILED, "session_not_found", False, "worker"),
        (ErrorCode.SESSION_FAILED, "session_busy", False, "ours"),
        (ErrorCode.SESSION_FAILED, "browser_crashed", False, "site"),
        (ErrorCode.SESSION_STUCK, "", False, "site"),
    ],
)
def test_session_fault(code: ErrorCode, remote_code: str, infra: bool, fault: str) -> None:
    assert fault_blame.session_fault(code, remote_code, infra=infra) == fault
    assert (fault in fault_blame.NOT_THE_SITES) == (fault != "site")
