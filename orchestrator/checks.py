"""Invariants of the deployment, as system checks with ids."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    q = getattr(settings, "Q_CLUSTER", {})
    timeout, retry = q.get("timeout"), q.get("retry")
    if timeout is not None and retry is not None and retry <= timeout:
        errors.append(
            checks.Error(
                f"Q_CLUSTER retry ({retry}) must exceed timeout ({timeout}).",
                hint="Otherwise a slow task is handed out again while it still runs.",
                id="orchestrator.E001",
            )
        )
    if not q.get("max_attempts"):
        errors.append(
            checks.Error("Q_CLUSTER max_attempts must be set explicitly.", id="orchestrator.E002")
        )
    return errors
