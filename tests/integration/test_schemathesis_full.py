"""The issue #18 schemathesis run, whole: every phase schemathesis has (examples,
coverage, fuzzing, stateful) with its default checks and the project's
`schema_valid_input_is_accepted`, over real HTTP (gzip included) against a loopback
server. It takes about 12 minutes on an idle machine (docs/reliability.md has the
figures of its last runs): it runs only with SCHEMATHESIS_FULL=1 (`-s` prints the
operations, scenarios and cases it ran). The bounded in-process run that CI keeps
green is tests/integration/test_schemathesis.py."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
import schemathesis.engine
from schemathesis.config import InferenceAlgorithm
from schemathesis.engine import Status
from schemathesis.engine import events as engine_events

from registry import tokens
from tests import factories

# The bounded run's check (the 400s allowed, and why, are stated there once) and its
# fixtures; importing the check registers it with schemathesis.
from tests.integration.test_schemathesis import (  # noqa: F401
    _no_throttle_state,
    schema_valid_input_is_accepted,
    seeded,
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


@pytest.mark.usefixtures("seeded")
def test_the_api_conforms_to_its_schema(live_server: Any) -> None:
    """Every default check, every phase the CLI runs (examples, coverage, fuzzing,
    stateful), every operation but the two that take no token or revoke the run's own
    token (SKIPPED), with a bounded number of examples per operation."""
    admin_token = tokens.issue(factories.UserFactory(role="admin"))[1]
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
