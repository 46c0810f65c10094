"""The issue #18 schemathesis run, whole: every phase schemathesis has (examples,
coverage, fuzzing, stateful) with its default checks and the project's
`schema_valid_input_is_accepted`, over real HTTP (gzip included) against a loopback
server. It takes about 12 minutes on an idle machine (docs/reliability.md has the
figures of its last runs): it runs only with SCHEMATHESIS_FULL=1 (`-s` prints the
operations, scenarios and cases it ran). The bounded in-process run that CI keeps
green is tests/integration/test_schemathesis.py."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import schemathesis.engine
from django.core.cache import cache
from schemathesis.config import InferenceAlgorithm
from schemathesis.engine import Status
from schemathesis.engine import events as engine_events

from registry import tokens
from tests import factories
from tests.integration.test_schemathesis import (  # noqa: F401  (registers the check)
    schema_valid_input_is_accepted,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("SCHEMATHESIS_FULL") != "1",
        reason="the full four-phase run (about 12 min) runs with SCHEMATHESIS_FULL=1",
    ),
]

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "5"))
MIN_SCENARIOS = 80
# Left out: the token endpoint takes no token and is throttled by design; the two DELETEs
# revoke credentials, and the stateful phase follows the token list's ids to this run's
# own token (every later request would be a 401). test_api_auth.py and test_api_tokens.py
# cover all three.
SKIPPED = {"POST /api/auth/token/", "DELETE /api/auth/token/", "DELETE /api/auth/tokens/{id}/"}
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


@pytest.fixture
def admin_token() -> str:
    user = factories.UserFactory(role="admin")
    return tokens.issue(user)[1]


@pytest.fixture(autouse=True)
def _no_throttle_state() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


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


def _failures(events: Any) -> tuple[int, dict[str, set[str]], list[str]]:
    """Scenarios run, the failed checks' messages by check name, and engine errors."""
    scenarios = cases = 0
    failed: dict[str, set[str]] = {}
    errors: list[str] = []
    for event in events:
        if isinstance(event, engine_events.ScenarioFinished):
            scenarios += 1
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failed.setdefault(check.name, set()).add(
                            f"{event.recorder.label}: {failure.title}: {str(failure.message)[:400]}"
                        )
        elif isinstance(event, engine_events.NonFatalError):
            errors.append(f"{event.label}: {event.info.title}: {event.info.message[:400]}")
        elif isinstance(event, engine_events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
    print(f"schemathesis: {scenarios} scenarios, {cases} cases")
    return scenarios, failed, errors


def test_the_api_conforms_to_its_schema(admin_token: str, seeded: None, live_server: Any) -> None:
    """Every default check, every phase the CLI runs (examples, coverage, fuzzing,
    stateful), every operation but the two that take no token or revoke the run's own
    token (SKIPPED), with a bounded number of examples per operation."""
    headers = {"Authorization": f"Token {admin_token}"}
    # Over loopback HTTP (pytest-django's live server), as the CLI runs it: the engine's
    # WSGI transport neither decodes gzip nor drops network-only options.
    schema: Any = schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/?format=json", headers=headers
    )
    schema = schema.exclude(
        lambda ctx: f"{ctx.operation.method.upper()} {ctx.operation.path}" in SKIPPED
    )
    # The built-in check stays on; 400s are judged by schema_valid_input_is_accepted.
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400"]
    schema.config.update(workers=1, headers=headers)
    schema.config.generation.update(max_examples=EXAMPLES, deterministic=True, database="none")
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing", "stateful"])
    # Links come from the schema's dependency analysis only: schemathesis 4.32.5's
    # location-header inference raises (and ends the run) on a URL in a response body
    # that urllib cannot split, such as a stored mission URL with host `[a582af92:f]`.
    schema.config.phases.stateful.inference.algorithms = [InferenceAlgorithm.DEPENDENCY_ANALYSIS]

    print(f"schemathesis: {len(list(schema.get_all_operations()))} operations")
    scenarios, failed, errors = _failures(schemathesis.engine.from_schema(schema).execute())

    report = "\n".join(
        f"{name} ({len(msgs)}):\n  " + "\n  ".join(sorted(msgs)) for name, msgs in failed.items()
    )
    assert not failed and not errors, f"{report}\n\nerrors:\n" + "\n".join(errors)
    assert scenarios >= MIN_SCENARIOS, scenarios
