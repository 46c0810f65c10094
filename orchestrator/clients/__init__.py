"""HTTP clients of the external services, one module per API (STYLE rule 5).

Every failure surfaces as `ServiceError`; see `base.py` for timeouts, the total
deadline, retries and secret hygiene, and `breaker.py` for the circuit breaker.
Import the concrete clients from their modules (`orchestrator.clients.worker`, ...).
"""

from __future__ import annotations

from orchestrator.clients.base import BaseClient, ClientSettings, ServiceError, shared_http_client

__all__ = ["BaseClient", "ClientSettings", "ServiceError", "shared_http_client"]
