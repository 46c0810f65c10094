"""Structured logs: one JSON object per line with the `extra` context fields."""

from __future__ import annotations

import json
import logging

from mission_control.logging import JsonFormatter, RedactSecretsFilter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "orchestrator.managers", logging.WARNING, __file__, 1, msg, args, None
    )
    record.__dict__.update(extra)
    return record


def test_it_writes_one_json_object_with_mission_attempt_and_error_code() -> None:
    record = _record("mission %s failed", 7, mission_id=7, attempt=2, error_code="SCRAPE_TIMEOUT")

    line = JsonFormatter().format(record)

    data = json.loads(line)
    assert "\n" not in line
    assert data["message"] == "mission 7 failed"
    assert data["level"] == "WARNING"
    assert data["logger"] == "orchestrator.managers"
    assert (data["mission_id"], data["attempt"], data["error_code"]) == (7, 2, "SCRAPE_TIMEOUT")
    assert data["ts"].endswith("Z")


def test_it_redacts_credentials_in_the_message_and_the_extras() -> None:
    record = _record(
        "GET %s", "http://user:hunter2@proxy:8080", header="Bearer abc.def", obj=["x:y@z"]
    )
    RedactSecretsFilter().filter(record)

    data = json.loads(JsonFormatter().format(record))

    assert "hunter2" not in json.dumps(data)
    assert "abc.def" not in json.dumps(data)


def test_it_includes_the_traceback_as_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()

    data = json.loads(JsonFormatter().format(record))

    assert "ValueError: boom" in data["exc_info"]
