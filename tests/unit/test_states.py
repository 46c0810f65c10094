"""The pure policies in `orchestrator.states`: item errors, retries and backoff, and the
one list of proxy faults. Data in, decisions out: no database, no clock."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mission_control.backoff import capped_exponential_s
from orchestrator import proxy_health, runner, webhooks
from orchestrator.clients.base import ClientSettings
from orchestrator.open_backoff import OpenBackoff
from orchestrator.states import (
    ITEM_ERRORS,
    PROXY_FAULT_CODES,
    PROXY_FAULT_WORKER_CODES,
    ErrorCode,
    MissionStatus,
    RetryPolicy,
    classify_item_error,
    decide_retry,
)
from registry.config import Config

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("worker_code", "http_status", "code", "retry"),
    [
        ("blocked", 403, ErrorCode.SCRAPE_BLOCKED, True),
        ("timeout", None, ErrorCode.SCRAPE_TIMEOUT, True),
        ("proxy_error", None, ErrorCode.SCRAPE_PROXY_ERROR, True),
        ("http_error", 503, ErrorCode.SCRAPE_HTTP_ERROR, True),
        ("http_error", 404, ErrorCode.SCRAPE_HTTP_ERROR, False),
        ("http_error", 410, ErrorCode.SCRAPE_HTTP_ERROR, False),
        ("dns_error", None, ErrorCode.SCRAPE_DNS_ERROR, False),
        ("parse_error", 200, ErrorCode.SCRAPE_PARSE_ERROR, False),
        ("something_new", 500, ErrorCode.SCRAPE_HTTP_ERROR, True),
        (None, None, ErrorCode.SCRAPE_HTTP_ERROR, True),
        ("", 404, ErrorCode.SCRAPE_HTTP_ERROR, False),
    ],
)
def test_classify_item_error_maps_worker_codes(
    worker_code: str | None, http_status: int | None, code: ErrorCode, retry: bool
) -> None:
    outcome = classify_item_error(worker_code, http_status, attempts=1, max_attempts=3)
    assert (outcome.code, outcome.retry) == (code, retry)


def test_classify_item_error_stops_at_the_last_attempt() -> None:
    assert classify_item_error("timeout", None, attempts=2, max_attempts=3).retry
    assert not classify_item_error("timeout", None, attempts=3, max_attempts=3).retry


def test_timeouts_blame_the_proxy_everywhere() -> None:
    assert ErrorCode.SCRAPE_TIMEOUT in PROXY_FAULT_CODES
    assert {"blocked", "proxy_error", "timeout"} == PROXY_FAULT_WORKER_CODES
    assert proxy_health.FAILURE_CODES == PROXY_FAULT_WORKER_CODES
    assert all(ITEM_ERRORS[c][0] in PROXY_FAULT_CODES for c in PROXY_FAULT_WORKER_CODES)


def test_backoff_doubles_from_base_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=5, base_s=30, cap_s=100, jitter=0)
    assert [policy.backoff_s(a, 0.5) for a in (1, 2, 3, 4)] == [30, 60, 100, 100]
    assert policy.backoff_s(0, 0.5) == 30  # attempt 0 is treated as the first


@given(
    attempt=st.integers(min_value=0, max_value=60),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_within_the_jitter_band(attempt: int, rand: float, jitter: float) -> None:
    policy = RetryPolicy(max_retries=3, base_s=10, cap_s=900, jitter=jitter)
    raw = min(900, 10 * 2 ** max(0, attempt - 1))
    delay = policy.backoff_s(attempt, rand)
    assert raw * (1 - jitter) - 1e-9 <= delay <= raw * (1 + jitter) + 1e-9
    assert delay >= 0


def test_can_retry_counts_attempts_from_one() -> None:
    policy = RetryPolicy(max_retries=2)
    assert [policy.can_retry(a) for a in (1, 2, 3)] == [True, True, False]


def test_decide_retry_queues_again_with_backoff_while_retries_last() -> None:
    policy = RetryPolicy(max_retries=2, base_s=30, cap_s=900, jitter=0)
    decision = decide_retry(policy, 1, ErrorCode.SCRAPE_JOB_FAILED, NOW, random.Random(1))
    assert decision.retry and decision.next_attempt == 2
    assert decision.next_attempt_at == NOW + dt.timedelta(seconds=30)
    assert decision.final_status == MissionStatus.QUEUED


def test_decide_retry_gives_up_after_the_last_retry() -> None:
    policy = RetryPolicy(max_retries=1)
    decision = decide_retry(policy, 2, ErrorCode.SCRAPE_JOB_FAILED, NOW, random.Random(1))
    assert (decision.retry, decision.next_attempt, decision.next_attempt_at) == (False, 2, None)
    assert decision.final_status == MissionStatus.ERRO


@pytest.mark.parametrize("code", [c for c in ErrorCode if not c.recoverable], ids=lambda c: c.value)
def test_decide_retry_never_retries_an_unrecoverable_code(code: ErrorCode) -> None:
    decision = decide_retry(RetryPolicy(max_retries=5), 1, code, NOW, random.Random(1))
    assert not decision.retry and decision.final_status == MissionStatus.ERRO


def test_decide_retry_is_deterministic_for_a_seeded_rng() -> None:
    policy = RetryPolicy(max_retries=3, base_s=30, cap_s=900, jitter=0.2)
    first = decide_retry(policy, 1, ErrorCode.SCRAPE_JOB_FAILED, NOW, random.Random(7))
    again = decide_retry(policy, 1, ErrorCode.SCRAPE_JOB_FAILED, NOW, random.Random(7))
    assert first == again


def test_capped_exponential_doubles_from_base_to_the_cap() -> None:
    assert [capped_exponential_s(a, 0.05, 1.0) for a in (1, 2, 3, 5, 6)] == [0.05, 0.1, 0.2, 0.8, 1]


def test_delay_is_the_capped_doubling_before_jitter() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=5.0, jitter=0.9)
    assert [policy.delay_s(a) for a in (0, 1, 2, 3, 4, 5, 6)] == [0.5, 0.5, 1, 2, 4, 5, 5]


@given(attempt=st.integers(min_value=1, max_value=40))
def test_every_backoff_in_the_engine_is_the_retry_policy_delay(attempt: int) -> None:
    settings = ClientSettings(backoff_base=0.2, backoff_cap=5.0)
    client_raw = RetryPolicy(base_s=0.2, cap_s=5.0).delay_s(attempt)
    assert settings.backoff_s(attempt, 0.0) == client_raw / 2  # equal jitter: half fixed
    cfg = Config({"webhook_backoff_base_s": 30.0, "webhook_backoff_cap_s": 3600.0})
    hook = webhooks.backoff_s(attempt, cfg)
    assert hook == RetryPolicy(base_s=30.0, cap_s=3600.0).delay_s(attempt)
    assert runner.DB_RETRY.delay_s(attempt) == min(5.0, 0.5 * 2 ** (attempt - 1))
    opens = OpenBackoff(base_s=1, cap_s=4)
    for _ in range(attempt):
        until = opens.failed(7, NOW)
    assert until == NOW + dt.timedelta(seconds=RetryPolicy(base_s=1, cap_s=4).delay_s(attempt))
