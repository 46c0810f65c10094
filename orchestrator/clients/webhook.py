"""The webhook receivers' client: one signed POST per attempt, through `BaseClient`.

Every request obeys the outbound policy (`mission_control.outbound`): the client is
built on a guarded httpx client (the target resolved once, checked and pinned, no
redirects followed). The receiver's answer is kept whatever its status (its first
`body_limit` bytes): the delivery's retries are scheduled by `orchestrator.webhooks`
in the database, so one call here is exactly one attempt.
"""

from __future__ import annotations

import httpx

from mission_control import outbound
from orchestrator.clients.base import BaseClient, ClientSettings, RawResponse

USER_AGENT = "MissionControl-Webhooks/1"


def guarded_http() -> httpx.Client:
    """An httpx client for a batch of deliveries: the outbound policy on every
    request, no redirects, no proxy from the environment."""
    return outbound.guarded_client(follow_redirects=False)


class WebhookClient(BaseClient):
    """POSTs to one receiver URL. `http` must obey the outbound policy
    (`guarded_http()`; tests may pass another guarded client)."""

    service_name = "webhook"

    def __init__(self, url: str, *, timeout_s: float, body_limit: int, http: httpx.Client) -> None:
        super().__init__(
            url,
            settings=ClientSettings(
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                deadline=timeout_s * 2,
                max_attempts=1,
                max_response_bytes=body_limit,
            ),
            http=http,
        )

    def post(
        self, body: bytes, *, headers: dict[str, str], idempotency_key: str, secret: str
    ) -> RawResponse:
        """One attempt; raises `ServiceError` when no answer came back."""
        return self._exchange(
            "POST",
            "",
            content=body,
            headers={"User-Agent": USER_AGENT, **headers},
            idempotency_key=idempotency_key,
            secrets=(secret,),
        )
