"""Property-based API tests: schemathesis generates requests from the live OpenAPI
schema (served at /api/schema/ to an admin) and runs every default check on the WSGI
app in-process, plus `schema_valid_input_is_accepted`: a 400 on a request the schema
calls valid fails unless it is a conflict with stored rows that the schema documents
(a unique field already taken, an id that does not exist). At least 1,000 cases, no
failure."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from registry import tokens
from tests import factories

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=False)]

MIN_CASES = int(os.environ.get("SCHEMATHESIS_MIN_CASES", "1000"))
# The token endpoint takes no token and is throttled by design; DELETE would revoke the
# run's own token. Both are covered by test_api_auth.py and test_api_tokens.py.
SKIPPED = {"POST /api/auth/token/", "DELETE /api/auth/token/"}
# A schema-valid request may still meet a row that is already there (the schema's
# help texts say so): a unique name, external id or domain taken; an id that does not
# exist. Those 400s say which field and why; any other 400 is a schema that promises
# too much. A cursor is opaque (server-issued; the parameter's description says only
# the `next`/`previous` links are valid), so no schema can list the valid strings.
CONFLICTS = re.compile(
    r"Invalid cursor: use the|already exists|already has|already taken|does not exist|is listed twice|appears more than once"
    r"|já existe|já tem|Pk inválido|objeto não existe|Re-enter the API key|Re-enter the password"
    # OpenAPI 3.0 has no `propertyNames`: a site's `headers` state the rule for their
    # names (HTTP tokens) in the field's description, not in a pattern.
    r"|invalid header name"
    # One rule for every text field, stated once in the API's description rather than
    # in each string's schema: NUL characters are refused (DRF's own CharField rule).
    r"|Caracteres nulos não são permitidos|Null characters are not allowed"
)
# Operations whose request schema cannot yet state every rule: a 400 there is still
# allowed, each for the reason given. (The bulk endpoints state theirs: a `oneOf` by
# `action` whose items are the resource's own request bodies.)
NOT_YET_STRICT = {
    # The type and range of `value` depend on the key in the path (registry/config.py
    # KEYS); OpenAPI cannot tie a request body's schema to a path parameter's value.
    "PUT /api/config/{key}/": "value's type depends on the key in the path",
    "PATCH /api/config/{key}/": "value's type depends on the key in the path",
}
# Request bodies of one media type whose content the schema cannot describe.
NOT_YET_STRICT_MEDIA = {
    ("POST /api/proxies/import/", "multipart/form-data"): "a file in the proxies.json or CSV "
    "format (the JSON body states the entries' schema)",
}


def _field_messages(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [m for v in value.values() for m in _field_messages(v)]
    if isinstance(value, list):
        return [m for v in value for m in _field_messages(v)]
    return [str(value)]


@schemathesis.check
def schema_valid_input_is_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance without the 400 allowance (see CONFLICTS)."""
    meta = case.meta
    if response.status_code != 400 or meta is None or not meta.generation.mode.is_positive:
        return None
    label = f"{case.operation.method.upper()} {case.operation.path}"
    if label in NOT_YET_STRICT or (label, case.media_type) in NOT_YET_STRICT_MEDIA:
        return None
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    messages = _field_messages(error.get("fields") or error.get("message", ""))
    refused = [m for m in messages if not CONFLICTS.search(m)]
    if refused or not messages:
        raise AssertionError(f"schema-valid input refused with 400: {error}")
    return None


@pytest.fixture
def admin_token() -> str:
    user = factories.UserFactory(role="admin")
    return tokens.issue(user)[1]


@pytest.fixture(autouse=True)
def _no_throttle_state() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """Like Django's test client: the WSGI app must not close the connection that
    holds the test's transaction at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded() -> None:
    """A few rows so detail routes and actions also meet existing objects."""
    factories.WorkerFactory(base_url="http://127.0.0.1:9/api/v1")
    factories.WriterFactory(base_url="http://127.0.0.1:9/api/v1", is_default=True)
    factories.UploaderFactory()
    factories.ProxyFactory(host="127.0.0.1", port=9)
    factories.SiteConfigFactory()
    mission = factories.MissionFactory(n_items=3)
    factories.MissionEventFactory(mission=mission)
    factories.RecurringMissionFactory()


def _runner(operation: Any, headers: dict[str, str], examples: int, counter: list[int]) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        counter[0] += 1
        cache.clear()  # throttles (connection tests) would turn into 429s
        case.call_and_validate(headers=headers, additional_checks=[schema_valid_input_is_accepted])

    return run


def test_the_api_conforms_to_its_schema(admin_token: str, seeded: None) -> None:
    # identity: the in-process client does not unpack the gzip answers GZipMiddleware
    # gives clients that accept them (tests/integration/test_schemathesis_full.py runs
    # over real HTTP, gzip included).
    headers = {"Authorization": f"Token {admin_token}", "Accept-Encoding": "identity"}
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers=headers)
    # The built-in check stays on; 400s are judged by schema_valid_input_is_accepted.
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400"]
    operations = [
        op.ok()
        for op in schema.get_all_operations()
        if f"{op.ok().method.upper()} {op.ok().path}" not in SKIPPED
    ]
    assert len(operations) > 20
    per_operation = math.ceil(MIN_CASES * 1.1 / len(operations))
    total = 0
    failures: list[str] = []

    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        counter = [0]
        try:
            _runner(operation, headers, per_operation, counter)()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:3000]}")
        total += counter[0]

    assert not failures, "\n\n".join(failures)
    assert total >= MIN_CASES, total
