"""Operator actions on missions: one function per action, used by the API, the
dashboard, the admin and schedules alike."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from orchestrator import counting, etl_outbox, events, states, transitions
from orchestrator.models import Mission, MissionEvent, MissionItem
from orchestrator.states import ItemStatus, MissionStatus
from registry import config
from registry.models import Writer, normalize_domain

MAX_URLS_PER_MISSION = 100_000
MAX_URL_LENGTH = 2048
# NUL and other control characters: PostgreSQL rejects NUL in text, none belongs in a URL.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class ActionError(Exception):
    """An action that the mission's current state does not allow (API: 409)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CleanUrls:
    urls: list[str]
    duplicates: int


def clean_urls(raw: Iterable[Any]) -> CleanUrls:
    """Validate absolute http(s) URLs and drop duplicates, keeping the first order.

    Raises ValidationError with {"urls": {index: reason}} listing every bad entry.
    """
    seen: set[str] = set()
    urls: list[str] = []
    errors: dict[str, str] = {}
    duplicates = 0
    for index, value in enumerate(raw):
        if not isinstance(value, str):
            errors[str(index)] = "Must be a string."
            continue
        url = value.strip()
        if not url:
            errors[str(index)] = "Empty URL."
            continue
        if len(url) > MAX_URL_LENGTH:
            errors[str(index)] = f"URL longer than {MAX_URL_LENGTH} characters."
            continue
        if _CONTROL_CHARS.search(url):
            errors[str(index)] = "URL contains control characters."
            continue
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            errors[str(index)] = "Must be an absolute http or https URL."
            continue
        if url in seen:
            duplicates += 1
            continue
        seen.add(url)
        urls.append(url)
        if len(errors) >= 100:
            break
    if errors:
        raise ValidationError({"urls": [f"{i}: {msg}" for i, msg in errors.items()]})
    if not urls:
        raise ValidationError({"urls": ["At least one URL is required."]})
    if len(urls) > MAX_URLS_PER_MISSION:
        raise ValidationError({"urls": [f"At most {MAX_URLS_PER_MISSION} URLs per mission."]})
    return CleanUrls(urls=urls, duplicates=duplicates)


def domain_of(url: str) -> str:
    return normalize_domain(urlsplit(url).hostname or "")


def derive_domain(urls: list[str]) -> str:
    """The most common domain among the URLs (ties: the first seen)."""
    counts = Counter(domain_of(u) for u in urls)
    return counts.most_common(1)[0][0]


def create_mission(
    *,
    name: str,
    urls: Iterable[Any],
    domain: str = "",
    priority: int = 0,
    writer: Writer | None = None,
    user: Any = None,
    schedule: Any = None,
    now: dt.datetime | None = None,
    etl_run: str | None = None,
    fetch_etl_run: Callable[[str, str | None], Any] | None = None,
) -> Mission:
    """A QUEUED mission of `urls`; with no URLs (or `etl_run`: "latest" or a run id) it
    resumes the ETL run's pending items instead (etl_outbox.EtlRefused when it cannot).
    `fetch_etl_run` replaces the ETL lookup (a caller holding a lock fetched it before)."""
    now = now or timezone.now()
    urls = list(urls)
    resume = None
    if etl_outbox.wants_resume(urls, etl_run):
        wanted = normalize_domain(domain) if domain else ""
        run = (fetch_etl_run or etl_outbox.fetch_run)(wanted, etl_run)
        resume = etl_outbox.check_resumable(run, wanted)
        urls = resume.urls
    cleaned = clean_urls(urls)
    domain = normalize_domain(domain) if domain else derive_domain(cleaned.urls)
    if not name.strip():
        raise ValidationError({"name": ["This field may not be blank."]})
    with transaction.atomic():
        mission = Mission.objects.create(
            name=name.strip()[:200],
            domain=domain,
            priority=priority,
            writer=writer or Writer.default(),
            created_by=user if getattr(user, "is_authenticated", False) else None,
            schedule=schedule,
            total_items=len(cleaned.urls),
        )
        _insert_items(mission, cleaned.urls)
        etl_outbox.record_created(mission, resume, now)
        MissionEvent.objects.create(
            mission=mission,
            kind=MissionEvent.Kind.TRANSITION,
            to_status=MissionStatus.QUEUED,
            attempt=1,
            actor=getattr(user, "username", "") or "",
            message=f"Missão criada com {len(cleaned.urls)} URLs"
            + (f" ({cleaned.duplicates} duplicadas ignoradas)" if cleaned.duplicates else ""),
            created_at=now,
        )
        events.publish("mission.queued", mission_id=mission.pk)
    return mission


def _insert_items(mission: Mission, urls: list[str]) -> None:
    """One pending item per URL, ids in URL order. PostgreSQL: one `INSERT ... SELECT
    unnest(...)` statement however many URLs (bench/pipeline.py: bulk_create spent most
    of a 100k-URL mission's creation building model instances)."""
    if connection.vendor != "postgresql":
        MissionItem.objects.bulk_create(
            (MissionItem(mission=mission, url=u) for u in urls), batch_size=5000
        )
        return
    default = MissionItem._meta.get_field("failed_proxies").get_default()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(MissionItem._meta.db_table)} "
            "(mission_id, url, status, attempts, job_key, error_code, error_message, "
            "failed_proxies) "
            "SELECT %s, x.url, %s, 0, '', '', '', %s::jsonb "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS x(url, n) ORDER BY x.n",
            [mission.pk, ItemStatus.PENDING.value, json.dumps(default), urls],
        )


def cancel_mission(mission: Mission, *, actor: str = "", now: dt.datetime | None = None) -> Mission:
    """Cancel a queued or running mission; its sessions are closed on the workers."""
    with transaction.atomic():
        # Sessions before missions (`orchestrator.transitions`): lock its live sessions,
        # then move the mission, then mark them CLOSING (fencing out their lease holders).
        transitions.lock_live_sessions([mission.pk])
        # Stamped once the locks are held: a job the engine recorded while this waited
        # for them happened before the cancel, and its event says so.
        now = now or timezone.now()
        mission.refresh_from_db()
        if mission.status not in states.CANCELLABLE:
            raise ActionError(
                "invalid_state", f"A mission in {mission.status} cannot be cancelled."
            )
        if not mission.transition(
            MissionStatus.CANCELADO,
            now=now,
            actor=actor,
            message="Cancelada pelo operador",
            locked_by="",
            locked_until=None,
            wait_reason="",
        ):
            raise ActionError("conflict", "The mission changed state meanwhile; try again.")
        # The SessionManager deletes them on their workers and releases slots.
        transitions.close_mission_sessions(mission.pk, now)
        # Items in flight go back to pending so a later retry resumes them.
        MissionItem.objects.filter(mission=mission, status=ItemStatus.ASSIGNED).update(
            status=ItemStatus.PENDING, session=None, job_key=""
        )
    return mission


def retry_mission(mission: Mission, *, actor: str = "", now: dt.datetime | None = None) -> Mission:
    """Queue an ended mission again: done items are kept, failed ones get a new chance."""
    now = now or timezone.now()
    with transaction.atomic():
        mission.refresh_from_db()
        if mission.status not in states.RETRYABLE_BY_OPERATOR:
            raise ActionError("invalid_state", f"A mission in {mission.status} cannot be retried.")
        reset = MissionItem.objects.filter(
            mission=mission, status__in=[ItemStatus.FAILED, ItemStatus.ASSIGNED]
        ).update(
            status=ItemStatus.PENDING,
            attempts=0,
            error_code="",
            error_message="",
            session=None,
            job_key="",
            failed_proxies=[],
        )
        # Counters are recounted from the items, the source of truth.
        done = MissionItem.objects.filter(mission=mission, status=ItemStatus.DONE).count()
        if not mission.transition(
            MissionStatus.QUEUED,
            now=now,
            actor=actor,
            message=(
                f"Reenfileirada pelo operador ({reset} "
                + ("item voltou" if reset == 1 else "itens voltaram")
                + " a pendente)"
            ),
            attempt=1,
            session_rotations=0,
            next_attempt_at=None,
            done_items=done,
            failed_items=0,
            error_code="",
            wait_reason="",
            atribuido_at=None,
            extraindo_at=None,
            armazenando_at=None,
            finalizado_at=None,
        ):
            raise ActionError("conflict", "The mission changed state meanwhile; try again.")
    return mission


def set_paused(paused: bool) -> bool:
    config.set_value("paused", paused)
    events.publish("control.paused" if paused else "control.resumed")
    return paused


def mission_counts_by_status(cap: int | None = None) -> counting.Counts:
    """Missions per state, every state present. Exact up to a cap of missions in a state
    (`cap`, else COUNT_CAP for the live states, which stay below it in practice, and
    ENDED_COUNT_CAP for the ended ones); above it an estimate, listed in `approximate`.
    One query, two when some state passes its cap (served by `mission_status_list_idx`)."""
    caps = None
    if cap is None:
        caps = dict.fromkeys(states.TERMINAL, counting.ENDED_COUNT_CAP)
    return counting.counts_by(Mission, "status", MissionStatus.values, cap=cap, caps=caps)


__all__ = [
    "ActionError",
    "cancel_mission",
    "clean_urls",
    "create_mission",
    "derive_domain",
    "domain_of",
    "mission_counts_by_status",
    "retry_mission",
    "set_paused",
]
