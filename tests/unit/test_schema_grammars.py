"""The exact grammars (registry.serializers): the schema's pattern and the validator
are one rule. Every string the pattern matches (as schemathesis draws it, `$` before a
trailing newline included) is accepted; what it does not match is refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestrator.serializers import WebhookEndpointSerializer
from registry.serializers import (
    HOST_GRAMMAR,
    HOST_PATTERN,
    SERVICE_URL_GRAMMAR,
    SERVICE_URL_PATTERN,
    WEBHOOK_URL_GRAMMAR,
    WEBHOOK_URL_PATTERN,
    clean_base_url,
    clean_host,
    exact_match,
)

CASES = [
    (SERVICE_URL_GRAMMAR, SERVICE_URL_PATTERN),
    (WEBHOOK_URL_GRAMMAR, WEBHOOK_URL_PATTERN),
    (HOST_GRAMMAR, HOST_PATTERN),
]


@pytest.mark.parametrize(("grammar", "pattern"), CASES)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_what_the_pattern_matches_the_validator_accepts(
    grammar: str, pattern: str, data: st.DataObject
) -> None:
    value = data.draw(st.from_regex(pattern))
    # `$` also matches before a trailing newline in Python; a URL's `format: uri` has no
    # newline, so no schema-valid URL ends with one.
    assume(grammar == HOST_GRAMMAR or not value.endswith("\n"))
    assert re.search(pattern, value)
    assert exact_match(grammar, value) is not None


@pytest.mark.parametrize(
    "value",
    [
        "https://f6n5397p.net*",  # schemathesis' mutation of a valid URL
        "https://a.example/x%",  # `%` only as an escape
        " \u00a0http://a.example",
        "http://user:pw@a.example",
        "http://a.example#frag",
        "HTTP://a.example",
        "http://a.example:65536",
        "http://a.example:0",
        "ftp://a.example",
        "http://[::1]:8000",
        "http://a.example/x y",
        " http://a.example",
    ],
)
def test_the_service_url_refuses_what_the_pattern_refuses(value: str) -> None:
    assert re.search(SERVICE_URL_PATTERN, value) is None
    with pytest.raises(ValueError):
        clean_base_url(value)


def test_a_url_with_a_trailing_newline_is_refused() -> None:
    """Python's `$` matches before it, but `format: uri` has no whitespace."""
    with pytest.raises(ValueError):
        clean_base_url("http://a.example\n")


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("http://worker:8000/api/v1/", "http://worker:8000/api/v1"),
        ("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9/api/v1"),
        (
            "https://w.example.com:65535/p%20q?a=1&b=/c",
            "https://w.example.com:65535/p%20q?a=1&b=/c",
        ),
    ],
)
def test_the_service_url_keeps_what_users_send(value: str, stored: str) -> None:
    assert clean_base_url(value) == stored


@pytest.mark.parametrize("value", ["a b", "a/b", "x@y", "", "[::1", "host.example:80"])
def test_the_proxy_host_refuses_what_the_pattern_refuses(value: str) -> None:
    assert re.search(HOST_PATTERN, value) is None or exact_match(HOST_GRAMMAR, value) is None
    with pytest.raises(ValueError):
        clean_host(value)


def test_the_proxy_host_keeps_names_and_addresses() -> None:
    assert [clean_host(h) for h in ["Proxy.Example.com", "127.0.0.1", "[::1]", "::1"]] == [
        "Proxy.Example.com",
        "127.0.0.1",
        "::1",
        "::1",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", ["http://worker:8000", "https://hooks.example.com/x%", "ftp://a.example"]
)
def test_the_webhook_url_refuses_what_its_pattern_refuses(value: str) -> None:
    assert re.search(WEBHOOK_URL_PATTERN, value) is None
    serializer = WebhookEndpointSerializer()
    with pytest.raises(Exception, match="Enter an http"):
        serializer.validate_url(value)
