"""Deploy checks of Mission Control's own security settings (`check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


def secrets_key_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.SECRETS_ENCRYPTION_KEYS:
        return []
    return [
        # An error, not a warning: `check --deploy` refuses a production without it.
        checks.Error(
            "SECRETS_ENCRYPTION_KEYS is empty: stored secrets would be encrypted with a "
            "key derived from SECRET_KEY.",
            hint="Set SECRETS_ENCRYPTION_KEYS (or SECRETS_ENCRYPTION_KEYS_FILE) to a Fernet key.",
            id="mission_control.E001",
        )
    ]


def localnode_key_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if not settings.LOCALNODE_ENABLED or settings.LOCALNODE_API_KEY:
        return []
    return [
        checks.Warning(
            "The built-in worker and writer (/local/) accept anonymous requests.",
            hint="Set LOCALNODE_API_KEY, or LOCALNODE_ENABLED=false.",
            id="mission_control.W002",
        )
    ]


def connection_tests_private(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if not settings.OUTBOUND_ALLOW_PRIVATE:
        return []
    return [
        checks.Warning(
            "Outbound calls (connection tests, webhooks, the built-in worker) may reach every private and loopback address.",
            hint="Set OUTBOUND_ALLOW_PRIVATE=false and list the networks of your "
            "workers in OUTBOUND_ALLOWED_NETWORKS.",
            id="mission_control.W003",
        )
    ]


def register() -> None:
    checks.register(secrets_key_configured, checks.Tags.security, deploy=True)
    checks.register(localnode_key_configured, checks.Tags.security, deploy=True)
    checks.register(connection_tests_private, checks.Tags.security, deploy=True)
