"""The built-in node's request validation (DRF serializers): strict JSON types, one
reason per field, errors named by their contract path."""

from __future__ import annotations

from typing import Any

import pytest

from localnode import worker_api, writer_api
from localnode.http import ApiError


def fields(validate: Any, payload: dict[str, Any]) -> tuple[int, str, dict[str, str] | None]:
    with pytest.raises(ApiError) as caught:
        validate(payload)
    return caught.value.status, caught.value.code, caught.value.fields


def test_a_session_request_is_strict_and_names_nested_fields() -> None:
    assert fields(
        worker_api.validate_session_request,
        {"session_key": 42, "timeout_s": True, "labels": [1], "proxy": {"id": 5, "country": "BRA"}},
    ) == (
        422,
        "invalid_request",
        {
            "session_key": "required: 1-128 characters of A-Za-z0-9._:-",
            "timeout_s": "an integer between 1 and 86400",
            "labels": "must be an object",
            "proxy.id": "must be a string",
            "proxy.country": "ISO 3166 alpha-2",
        },
    )


def test_a_session_request_fills_the_defaults() -> None:
    data = worker_api.validate_session_request(
        {"session_key": "s1", "provider": "", "timeout_s": None, "proxy": {"country": "br"}}
    )
    assert (data["provider"], data["engine"], data["timeout_s"], data["labels"]) == (
        "local",
        "http",
        900,
        {},
    )
    assert (data["proxy_country"], data["proxy_url"]) == ("BR", "")


def test_a_job_names_each_item_and_keeps_unknown_options() -> None:
    status, code, errors = fields(
        worker_api.validate_job_request,
        {
            "job_key": "j",
            "items": [{"item_id": "a", "url": "https://x/1"}, {"item_id": "a", "url": "ftp://x"}],
            "options": {"delay_ms": -1, "headers": {"A": 1}},
        },
    )
    assert (status, code) == (422, "invalid_request")
    assert errors == {
        "items[1].url": "an absolute http or https URL",
        "options.delay_ms": "an integer of milliseconds between 0 and 600000",
        "options.headers": "an object of header name -> value",
    }
    ok = worker_api.validate_job_request(
        {"job_key": "j", "items": [{"item_id": "a", "url": "https://x/1"}], "options": {"z": 1}}
    )
    assert ok["options"] == {"z": 1}
    _, _, dup = fields(
        worker_api.validate_job_request,
        {"job_key": "j", "items": [{"item_id": "a", "url": "https://x/1"}] * 2},
    )
    assert dup == {"items[1].item_id": "duplicate item_id in this job"}


def test_a_batch_checks_its_envelope_then_its_size_then_each_record() -> None:
    assert fields(writer_api.validate_batch, {"batch_key": "k", "mission": "x", "records": "r"})[
        2
    ] == {"mission.id": "required: a positive integer", "records": "required: a list"}
    too_many = {"batch_key": "k", "mission": {"id": "7"}, "records": [{}] * 501}
    assert fields(writer_api.validate_batch, too_many)[:2] == (413, "batch_too_large")
    bad = {
        "batch_key": "k",
        "mission": {"id": 7},
        "records": [{"item_id": "1"}, "x", {"item_id": 7}],
    }
    assert fields(writer_api.validate_batch, bad) == (
        422,
        "invalid_records",
        {
            "records[1]": "must be an object",
            "records[2].item_id": "required: a string of 1-64 characters",
        },
    )
    good = writer_api.validate_batch(
        {"batch_key": "k", "mission": {"id": "7", "run_id": "r"}, "records": [{"item_id": "1"}]}
    )
    assert (good["mission_id"], good["run_id"]) == (7, "r")
    assert good["records"] == [
        {"item_id": "1", "url": "", "fetched_at": None, "http_status": None, "data": {}}
    ]
