"""Health endpoints for load balancers and the container HEALTHCHECK.

- ``/healthz``: the process answers (liveness; no I/O).
- ``/readyz``: this web process can serve: the database and the django-q2 broker
  answer (503 otherwise). The orchestrator's heartbeat is reported but does not make
  the web tier unready: a dead orchestrator must not take the dashboard down with it.
- ``/healthz/orchestrator``: 503 unless a running orchestrator heartbeated within
  the ``heartbeat_stale_after_s`` config key (for the orchestrator's own monitor).

Anonymous by design (load balancers do not log in), so they say only up/down: no
versions, host names or error texts.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from mission_control import extensions

logger = logging.getLogger(__name__)


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("readiness: database check failed")
        return False
    return True


def broker_ok() -> bool:
    """The django-q2 broker answers (Redis PING, or the ORM broker's table)."""
    try:
        from django_q.brokers import get_broker
        from django_q.brokers.orm import ORM

        broker = get_broker()
        if isinstance(broker, ORM):
            broker.queue_size()  # ping() of the ORM broker is a constant True
            return True
        return bool(broker.ping())
    except Exception:
        logger.exception("readiness: broker check failed")
        return False


def orchestrator_fresh(now: dt.datetime) -> bool:
    """The engine's own check, registered under the ``orchestrator_fresh`` hook."""
    try:
        return bool(extensions.first("orchestrator_fresh")(now))
    except Exception:
        logger.exception("readiness: orchestrator heartbeat check failed")
        return False


def _up(ok: bool) -> str:
    return "up" if ok else "down"


@never_cache
@require_GET
def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readiness(request: HttpRequest) -> JsonResponse:
    db = database_ok()
    broker = broker_ok() if db else False
    orchestrator = orchestrator_fresh(timezone.now()) if db else False
    ready = db and broker
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "database": _up(db),
        "broker": _up(broker),
        "orchestrator": "fresh" if orchestrator else "stale",
    }
    return JsonResponse(body, status=200 if ready else 503)


@never_cache
@require_GET
def orchestrator(request: HttpRequest) -> JsonResponse:
    fresh = database_ok() and orchestrator_fresh(timezone.now())
    return JsonResponse(
        {"status": "ok" if fresh else "unavailable", "orchestrator": "fresh" if fresh else "stale"},
        status=200 if fresh else 503,
    )
