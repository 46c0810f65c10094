"""A URL robots.txt disallows is final for the item and blames no proxy."""

from orchestrator.states import ITEM_ERRORS, PROXY_FAULT_CODES, ErrorCode


def test_robots_disallowed_is_not_retried_and_not_a_proxy_fault() -> None:
    code, retry = ITEM_ERRORS["robots_disallowed"]
    assert code == ErrorCode.SCRAPE_ROBOTS_DISALLOWED
    assert retry is False
    assert code not in PROXY_FAULT_CODES
    assert not code.recoverable
