"""`managers.pages.classify_page` and `fail_item`: what a page of results does to its
items, decided without the database (unsaved rows are plain data here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from orchestrator.clients.worker import Result
from orchestrator.managers.pages import classify_page, fail_item
from orchestrator.models import BrowserSession, Mission, MissionItem
from orchestrator.states import ErrorCode, ItemStatus

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def result(
    item_id: int, status: str = "ok", http: int | None = 200, code: str | None = None
) -> Result:
    return Result(str(item_id), f"https://e.com/{item_id}", status, http, NOW, None, {}, code, None)


def test_only_items_still_assigned_count_and_successes_group_by_status() -> None:
    by_id = {
        1: result(1),
        2: result(2, http=203),
        3: result(3, "error", 403, "blocked"),
        4: result(4),
    }
    mine, ok, failed = classify_page(by_id, assigned={1, 2, 3})
    assert mine == [1, 2, 3]
    assert ok == {200: [1], 203: [2]}
    assert failed == [3]


def test_a_proxy_fault_marks_the_proxy_and_retries_while_attempts_last() -> None:
    item = MissionItem(pk=3, attempts=1, status=ItemStatus.ASSIGNED, job_key="k", failed_proxies=[])
    session = BrowserSession(proxy_external_id="px-1")
    outcome = fail_item(item, result(3, "error", None, "timeout"), session, 3, NOW)
    assert outcome.retry and outcome.code is ErrorCode.SCRAPE_TIMEOUT
    assert (item.status, item.job_key, item.failed_proxies) == (ItemStatus.PENDING, "", ["px-1"])


def test_a_final_http_error_fails_the_item_for_good() -> None:
    item = MissionItem(pk=5, attempts=1, status=ItemStatus.ASSIGNED, failed_proxies=[])
    outcome = fail_item(item, result(5, "error", 404, "http_error"), BrowserSession(), 3, NOW)
    assert not outcome.retry
    assert (item.status, item.finished_at, item.failed_proxies) == (ItemStatus.FAILED, NOW, [])
    assert item.error_code == "SCRAPE_HTTP_ERROR" and item.error_message == "http_error"


def test_a_proxy_fault_past_the_attempts_retries_while_an_untried_fitting_proxy_exists() -> None:
    """Issue #15 case 4: attempts spent on proxies that failed never fail the item for
    good while a fitting proxy it has not tried exists; once none is left, they do."""
    session = BrowserSession(proxy_external_id="px-2")
    session.mission = Mission(domain="e.com")
    asked: list[tuple[list[str], str]] = []

    def untried_left(fitting: set[str]) -> Callable[[MissionItem, str], bool]:
        def left(item: MissionItem, domain: str) -> bool:
            asked.append((list(item.failed_proxies), domain))
            return bool(fitting - set(item.failed_proxies))

        return left

    item = MissionItem(
        pk=3, attempts=3, status=ItemStatus.ASSIGNED, failed_proxies=["px-0", "px-1"]
    )
    outcome = fail_item(
        item,
        result(3, "error", 403, "blocked"),
        session,
        3,
        NOW,
        untried_left=untried_left({"px-0", "px-1", "px-2", "px-3"}),
    )
    assert outcome.retry and item.status == ItemStatus.PENDING
    assert asked == [(["px-0", "px-1", "px-2"], "e.com")]

    item = MissionItem(
        pk=4, attempts=3, status=ItemStatus.ASSIGNED, failed_proxies=["px-0", "px-1"]
    )
    outcome = fail_item(
        item,
        result(4, "error", 403, "blocked"),
        session,
        3,
        NOW,
        untried_left=untried_left({"px-0", "px-1", "px-2"}),
    )
    assert not outcome.retry and item.status == ItemStatus.FAILED


def test_a_site_error_past_the_attempts_fails_whatever_proxies_are_left() -> None:
    session = BrowserSession(proxy_external_id="px-2")
    session.mission = Mission(domain="e.com")
    item = MissionItem(pk=5, attempts=3, status=ItemStatus.ASSIGNED, failed_proxies=[])
    outcome = fail_item(
        item,
        result(5, "error", 500, "http_error"),
        session,
        3,
        NOW,
        untried_left=lambda item, domain: True,
    )
    assert not outcome.retry and item.status == ItemStatus.FAILED
