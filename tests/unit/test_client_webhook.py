"""WebhookClient: one attempt through BaseClient on the guarded transport; the answer
is kept whatever its status (truncated, never refused); failures map to the coarse
errors an attempt records."""

from __future__ import annotations

import httpx
import pytest

from mission_control import outbound
from orchestrator import webhooks
from orchestrator.clients.base import ServiceError
from orchestrator.clients.webhook import USER_AGENT, WebhookClient, guarded_http

OPEN = outbound.Policy(allow_private=True)
STRICT = outbound.Policy(allow_private=False)


def client(handler: httpx.MockTransport, policy: outbound.Policy = OPEN) -> WebhookClient:
    http = outbound.guarded_client(policy=policy, transport=handler)
    return WebhookClient("http://127.0.0.1:9/hook", timeout_s=2, body_limit=100, http=http)


def test_one_attempt_whatever_the_status_with_the_body_truncated() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, content=b"x" * 5000)

    got = client(httpx.MockTransport(answer)).post(
        b'{"a":1}', headers={"X-MC-Event": "e"}, idempotency_key="k1", secret="s" * 20
    )

    assert (got.status, got.text()) == (500, "x" * 100)
    (request,) = seen  # no retry: the delivery schedules its own
    assert request.headers["Idempotency-Key"] == "k1"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-MC-Event"] == "e"
    assert request.url.host == "127.0.0.1" and request.content == b'{"a":1}'


def test_the_outbound_policy_refuses_before_anything_is_sent() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(answer)
    with pytest.raises(ServiceError) as caught:
        client(transport, STRICT).post(b"{}", headers={}, idempotency_key="k", secret="s" * 20)
    assert caught.value.code == "refused" and not caught.value.transient
    assert seen == []


@pytest.mark.parametrize(
    ("error", "recorded"),
    [
        (
            ServiceError("refused", "private or loopback address"),
            "refused: private or loopback address",
        ),
        (ServiceError("invalid_url", "InvalidURL: x"), "refused: invalid URL"),
        (ServiceError("timeout", "ReadTimeout: x"), "timeout"),
        (ServiceError("deadline_exceeded", "x"), "timeout"),
        (ServiceError("connect_error", "ConnectTimeout: x"), "timeout"),
        (ServiceError("connect_error", "ConnectError: [Errno 111]"), "connection failed"),
        (ServiceError("network_error", "RemoteProtocolError: x"), "request failed"),
        (ServiceError("invalid_response", "x"), "request failed"),
    ],
)
def test_failures_are_recorded_coarsely(error: ServiceError, recorded: str) -> None:
    assert webhooks._failure(error) == recorded


def test_each_batch_of_deliveries_verifies_tls_with_the_one_context_of_the_process() -> None:
    # A batch's guarded client used to build its own context (the CA bundle loaded
    # again, ~20 ms of CPU a batch). What the context verifies: test_outbound_policy.py.
    contexts = set()
    for _ in range(2):
        with guarded_http() as http:
            inner = http._transport._inner  # type: ignore[attr-defined]
            contexts.add(id(inner._pool._ssl_context))
    assert contexts == {id(outbound.tls_context())}
