"""The ETL system of record, driven from a durable outbox (docs/contracts/etl-api.md, revised).

- One run per live mission: a mission created with URLs gets its own run (a `create`
  step); resuming is asked for (no URLs, or `etl_run: "latest"` / a run id), checked
  against the ETL and refused with a clear 4xx when it cannot be done.
- Every step (create, item updates as pages are saved, finalize on FINALIZADO, ERRO and
  CANCELADO) is an `EtlStep` row written in the same transaction as the state it
  reports, by the one-line hooks `record_created`, `record_items`, `record_transition`.
- `sync` (EtlManager every `etl_tick_s`, and the `orchestrator.tasks.etl_sync`
  schedule) sends them in order per mission, each with its idempotency key, deletes a
  step only once the ETL acknowledged it, and retries failures with backoff
  (honouring Retry-After). No database lock is held across an HTTP call: a mission's
  steps are claimed with a lease on its `EtlRun`.

When `ETL_API_ENDPOINT` is unset nothing is recorded and every step is skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions

from orchestrator import states
from orchestrator.clients.base import ServiceError
from orchestrator.clients.etl import EtlClient, EtlRun, get_etl_client
from orchestrator.etl_models import EtlRun as RunLink
from orchestrator.etl_models import EtlStep
from orchestrator.models import Mission, MissionEvent, MissionItem
from orchestrator.states import ItemStatus, MissionStatus, RetryPolicy
from registry.config import Config

logger = logging.getLogger("orchestrator.etl")

FINAL_STATUS = {
    MissionStatus.FINALIZADO: "completed",
    MissionStatus.ERRO: "failed",
    MissionStatus.CANCELADO: "cancelled",
}
# Steps of one mission looked at per sync, and item updates sent in one PATCH batch.
STEPS_PER_MISSION = 200
MISSIONS_PER_SYNC = 100
LEASE_S = 120
# Marks a step whose retry time the service set (Retry-After): kept, never pulled forward.
RATE_LIMITED = " [Retry-After]"


class EtlRefused(exceptions.APIException):
    """A mission creation the ETL link cannot honour, answered by the API in the one
    error shape: 409 (no ETL configured, no unfinished run to resume, run owned by
    mission N, run with no pending item, run not found) or 503 (the ETL could not be
    asked); the dashboard shows `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.status_code = status
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Resume:
    run_id: str
    urls: list[str]  # the run's items not done: the mission's URLs
    item_ids: dict[str, str]  # every item of the run, url -> ETL item id
    done: int


def enabled() -> bool:
    return bool((getattr(settings, "ETL_API_ENDPOINT", "") or "").strip())


def _key(mission_id: int, kind: str) -> str:
    return f"mc-{mission_id}-{kind}-{uuid.uuid4().hex}"


# ------------------------------------------------------------------ creation


def wants_resume(urls: Sequence[Any], etl_run: str | None) -> bool:
    """Resuming is asked for: a run named, or no URLs."""
    return bool(etl_run) or not urls


ETL_RUN_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"


def template_errors(urls: Sequence[Any], domain: str, etl_run: str) -> dict[str, str]:
    """Why a recurring mission's template could never create a mission (no HTTP: the
    run itself is looked up at each due run, which records a refusal as a failed run):
    URLs, or a run to resume (the domain's latest, or a run id) with an ETL configured."""
    if not enabled() and (etl_run or not urls):
        return {"urls": "Informe as URLs: sem ETL configurado não há execução a retomar."}
    if urls and etl_run:
        return {"etl_run": "Informe as URLs ou a execução ETL a retomar, não os dois."}
    if urls:
        return {}
    if etl_run in ("", "latest") and not domain:
        return {"domain": "Informe o domínio (ou as URLs) para retomar a última execução ETL."}
    return {}


def resolve_resume(domain: str, etl_run: str | None) -> Resume:
    """The run a new mission resumes (HTTP, before any transaction): the latest of
    `domain` (`etl_run` None or "latest") or the run `etl_run`; refused unless it is
    unfinished, has pending items and no live mission owns it."""
    return check_resumable(fetch_run(domain, etl_run), domain)


def fetch_run(domain: str, etl_run: str | None) -> EtlRun | None:
    """The ETL's side of `resolve_resume` (HTTP only, no database lock may be held):
    the run to resume, None when the domain has none; `check_resumable` then decides
    (recurring missions fetch before locking their schedule and check under it)."""
    if not enabled():
        raise EtlRefused(
            409,
            "etl_not_configured",
            "Informe as URLs: sem ETL configurado não há execução a retomar.",
        )
    client = get_etl_client()
    assert client is not None
    try:
        if etl_run in (None, "", "latest"):
            if not domain:
                raise EtlRefused(409, "etl_domain_required", "Informe o domínio ou as URLs.")
            latest = client.get_latest_run_for_domain(domain)
            run = client.fetch_scrape_run(latest.id) if latest is not None else None
        else:
            run = client.fetch_scrape_run(str(etl_run))
    except ServiceError as exc:
        if exc.infrastructure or exc.transient:
            raise EtlRefused(
                503, "etl_unavailable", f"ETL indisponível ({exc.code}); tente de novo."
            ) from None
        if exc.status == 404:
            raise EtlRefused(
                409, "etl_run_not_found", f"Execução ETL {etl_run} não existe."
            ) from None
        raise EtlRefused(409, "etl_rejected", f"ETL recusou: {exc.code}") from None
    return run


def check_resumable(run: EtlRun | None, domain: str) -> Resume:
    if run is None or run.finished:
        raise EtlRefused(
            409, "etl_no_unfinished_run", f"Nenhuma execução ETL não concluída para {domain}."
        )
    owner = RunLink.objects.filter(run_id=run.id, live=True).values_list("mission_id", flat=True)
    if owner:
        raise EtlRefused(
            409, "etl_run_owned", f"A execução ETL {run.id} pertence à missão #{owner[0]}."
        )
    pending = [item.url for item in run.pending_items() if item.url]
    if not pending:
        raise EtlRefused(
            409, "etl_run_has_no_pending_items", f"A execução {run.id} não tem itens pendentes."
        )
    return Resume(
        run_id=run.id,
        urls=pending,
        item_ids={item.url: item.id for item in run.items if item.url},
        done=len(run.items) - len(run.pending_items()),
    )


def record_created(mission: Mission, resume: Resume | None, now: dt.datetime) -> None:
    """In the mission's creation transaction: its run link, and a `create` step unless
    it resumes a run (then the constraint refuses a run another live mission owns)."""
    if not enabled():
        return
    if resume is None:
        RunLink.objects.create(mission=mission, domain=mission.domain)
        EtlStep.objects.create(
            mission=mission,
            kind=EtlStep.Kind.CREATE,
            key=_key(mission.pk, "create"),
            created_at=now,
        )
        return
    try:
        with transaction.atomic():
            RunLink.objects.create(
                mission=mission,
                domain=mission.domain,
                run_id=resume.run_id,
                origin=RunLink.Origin.RESUMED,
                item_ids=resume.item_ids,
            )
    except IntegrityError:
        raise EtlRefused(
            409, "etl_run_owned", f"A execução ETL {resume.run_id} pertence a outra missão."
        ) from None
    Mission.objects.filter(pk=mission.pk).update(etl_run_id=resume.run_id)
    mission.etl_run_id = resume.run_id
    mission.log(
        MissionEvent.Kind.INFO,
        f"Retomando a execução ETL {resume.run_id}: {len(resume.urls)} itens pendentes "
        f"({resume.done} já concluídos não serão raspados de novo)",
        now=now,
        data={"etl": "resumed", "run_id": resume.run_id, "done": resume.done},
    )


# ------------------------------------------------------------------ hooks


def record_items(item_ids: Iterable[int], now: dt.datetime) -> int:
    """In the transaction that saved a page: one `items` step per mission with the
    outcome of its items that ended (done or failed)."""
    ids = list(item_ids)
    if not ids or not enabled():
        return 0
    ended = [ItemStatus.DONE, ItemStatus.FAILED]
    rows = MissionItem.objects.filter(
        pk__in=ids, status__in=ended, mission__etl_run__isnull=False
    ).values_list("mission_id", "url", "status", "error_code")
    by_mission: dict[int, list[list[str]]] = defaultdict(list)
    for mission_id, url, status, error in rows:
        by_mission[mission_id].append([url, status, error])
    EtlStep.objects.bulk_create(
        EtlStep(
            mission_id=mission_id,
            kind=EtlStep.Kind.ITEMS,
            payload={"items": items},
            key=_key(mission_id, "items"),
            created_at=now,
        )
        for mission_id, items in by_mission.items()
    )
    return len(by_mission)


def record_transition(missions: Sequence[Mission], to: str, now: dt.datetime) -> None:
    """In the transaction of a mission transition: an end (FINALIZADO, ERRO, CANCELADO)
    frees the run and owes a `finalize` with the counts and a `status`; a mission queued
    again after an end owns its run again (unless another live mission took it)."""
    if not missions or not enabled():
        return
    ids = [m.pk for m in missions]
    if to in states.TERMINAL:
        _record_ends(ids, to, now)
    elif to == MissionStatus.QUEUED:
        _reclaim(ids, now)


def _record_ends(ids: list[int], to: str, now: dt.datetime) -> None:
    linked = set(RunLink.objects.filter(mission_id__in=ids).values_list("mission_id", flat=True))
    if not linked:
        return
    RunLink.objects.filter(mission_id__in=linked).update(live=False, updated_at=now)
    rows = Mission.objects.filter(pk__in=linked).values_list(
        "pk", "total_items", "done_items", "failed_items", "atribuido_at"
    )
    EtlStep.objects.bulk_create(
        EtlStep(
            mission_id=pk,
            kind=EtlStep.Kind.FINALIZE,
            payload={
                "total": total,
                "done": done,
                "failed": failed,
                "duration_s": round((now - started).total_seconds(), 3) if started else 0.0,
                "status": FINAL_STATUS[MissionStatus(to)],
            },
            key=_key(pk, "finalize"),
            created_at=now,
        )
        for pk, total, done, failed, started in rows
    )


def _reclaim(ids: list[int], now: dt.datetime) -> None:
    for link in RunLink.objects.filter(mission_id__in=ids, live=False):
        try:
            with transaction.atomic():
                RunLink.objects.filter(pk=link.pk).update(live=True, updated_at=now)
        except IntegrityError:
            MissionEvent.objects.create(
                mission_id=link.mission_id,
                kind=MissionEvent.Kind.INFO,
                message=f"A execução ETL {link.run_id} foi retomada por outra missão: "
                "esta tentativa não é reportada a ela",
                data={"etl": "not_owner", "run_id": link.run_id},
                created_at=now,
            )


# ------------------------------------------------------------------ sending


class _Blocked(Exception):
    """A mission's later steps wait for an earlier one (its run is not created yet)."""


def sync(
    now: dt.datetime | None = None,
    cfg: Config | None = None,
    *,
    owner: str = "etl",
    client: EtlClient | None = None,
    rng: random.Random | None = None,
) -> dict[str, int]:
    """Send the due steps of up to MISSIONS_PER_SYNC missions, in order per mission."""
    from registry import config

    now = now or timezone.now()
    cfg = cfg or config.load()
    client = client or _client(cfg)
    counts: dict[str, int] = defaultdict(int)
    if client is None:
        return {}
    due = (
        EtlStep.objects.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("mission_id")
        .values_list("mission_id", flat=True)
        .distinct()[:MISSIONS_PER_SYNC]
    )
    for mission_id in list(due):
        if not _lease(mission_id, owner, now):
            continue
        try:
            for name, n in _sync_mission(mission_id, client, now, cfg, rng or random.Random()):
                counts[name] += n
        finally:
            RunLink.objects.filter(mission_id=mission_id, locked_by=owner).update(
                locked_by="", locked_until=None
            )
    if any(n for name, n in counts.items() if name != "failed"):
        counts["released"] = _release_backoffs(now)
    return {name: n for name, n in counts.items() if n}


def _release_backoffs(now: dt.datetime) -> int:
    """The ETL answered: steps waiting out an outage's backoff go at the next sync
    instead of each waiting up to `etl_retry_cap_s` (a Retry-After is still honoured)."""
    return (
        EtlStep.objects.filter(next_attempt_at__gt=now)
        .exclude(last_error__contains=RATE_LIMITED)
        .update(next_attempt_at=now)
    )


def _client(cfg: Config) -> EtlClient | None:
    client = get_etl_client(cfg)
    if client is not None:
        # One attempt per call: the outbox retries, with its own backoff.
        client.settings = dataclasses.replace(client.settings, max_attempts=1)
    return client


def _lease(mission_id: int, owner: str, now: dt.datetime) -> bool:
    """Compare-and-set claim of one mission's steps (a lease, not a lock held over HTTP)."""
    free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
    return (
        RunLink.objects.filter(free, mission_id=mission_id).update(
            locked_by=owner, locked_until=now + dt.timedelta(seconds=LEASE_S)
        )
        == 1
    )


def _sync_mission(
    mission_id: int, client: EtlClient, now: dt.datetime, cfg: Config, rng: random.Random
) -> Iterable[tuple[str, int]]:
    steps = list(EtlStep.objects.filter(mission_id=mission_id).order_by("id")[:STEPS_PER_MISSION])
    if not steps or (steps[0].next_attempt_at and steps[0].next_attempt_at > now):
        return
    link = RunLink.objects.get(mission_id=mission_id)
    index = 0
    try:
        while index < len(steps):
            step = steps[index]
            if step.kind == EtlStep.Kind.ITEMS:
                batch = _items_batch(steps, index)
                yield "items", _send_items(link, batch, client, now)
                index += len(batch)
                continue
            if step.kind == EtlStep.Kind.CREATE:
                yield "created", _send_create(link, step, client, now)
            else:
                yield "finalized", _send_finalize(link, step, client, now)
            index += 1
    except _Blocked:
        return
    except ServiceError as exc:
        _failed(link, steps[index], exc, now, cfg, rng)
        yield "failed", 1
        return
    if link.failing_since is not None:
        _recovered(link, index, now)


def _items_batch(steps: list[EtlStep], start: int) -> list[EtlStep]:
    batch = []
    for step in steps[start:]:
        if step.kind != EtlStep.Kind.ITEMS:
            break
        batch.append(step)
    return batch


def _event(link: RunLink, message: str, now: dt.datetime, **data: Any) -> None:
    kind = (
        MissionEvent.Kind.ERROR
        if data.get("etl") in ("failed", "rejected")
        else MissionEvent.Kind.INFO
    )
    MissionEvent.objects.create(
        mission_id=link.mission_id,
        kind=kind,
        message=message[:2000],
        data={"run_id": link.run_id, **data},
        created_at=now,
    )


def _ok(link: RunLink, steps: Sequence[EtlStep], now: dt.datetime, **fields: Any) -> None:
    with transaction.atomic():
        EtlStep.objects.filter(pk__in=[s.pk for s in steps]).delete()
        RunLink.objects.filter(pk=link.pk).update(last_ok_at=now, updated_at=now, **fields)
    link.last_ok_at = now
    for name, value in fields.items():
        setattr(link, name, value)


def _send_create(link: RunLink, step: EtlStep, client: EtlClient, now: dt.datetime) -> int:
    if link.run_id:  # created before a crash deleted the step: nothing to send
        _ok(link, [step], now)
        return 0
    urls = list(
        MissionItem.objects.filter(mission_id=link.mission_id)
        .order_by("id")
        .values_list("url", flat=True)
    )
    run = client.create_scrape_run(link.domain, urls, key=step.key)
    with transaction.atomic():
        _ok(link, [step], now, run_id=run.id, item_ids={i.url: i.id for i in run.items if i.url})
        Mission.objects.filter(pk=link.mission_id).update(etl_run_id=run.id)
        _event(link, f"Execução ETL {run.id} criada com {len(urls)} URLs", now, etl="created")
    return 1


def _send_items(link: RunLink, batch: list[EtlStep], client: EtlClient, now: dt.datetime) -> int:
    if not link.run_id:
        raise _Blocked
    updates: list[dict[str, Any]] = []
    for step in batch:
        for url, status, error in step.payload.get("items", []):
            item_id = link.item_ids.get(url)
            if item_id is None:
                continue
            update: dict[str, Any] = {"id": item_id, "done": status == "done", "status": status}
            if error:
                update["error"] = error
            updates.append(update)
    if updates:
        client.update_scrape_run_items(link.run_id, updates, key=f"{batch[0].key}+{len(batch)}")
    _ok(link, batch, now)
    return len(updates)


def _send_finalize(link: RunLink, step: EtlStep, client: EtlClient, now: dt.datetime) -> int:
    if not link.run_id:
        raise _Blocked
    client.finalize_scrape_run(link.run_id, step.payload, key=step.key)
    status = str(step.payload.get("status", ""))
    with transaction.atomic():
        _ok(link, [step], now, finalized_status=status)
        _event(
            link,
            f"Execução ETL {link.run_id} finalizada ({status}: {step.payload.get('done')} "
            f"concluídos, {step.payload.get('failed')} falharam de {step.payload.get('total')})",
            now,
            etl="finalized",
            status=status,
        )
    return 1


def retry_delay(attempts: int, exc: ServiceError, cfg: Config, rng: random.Random) -> float:
    """Capped exponential backoff for the `attempts`-th failure; never sooner than the
    service's Retry-After."""
    policy = RetryPolicy(
        max_retries=10**9, base_s=cfg.etl_retry_base_s, cap_s=cfg.etl_retry_cap_s, jitter=0.2
    )
    return max(policy.backoff_s(attempts, rng.random()), exc.retry_after or 0.0)


def _failed(
    link: RunLink,
    step: EtlStep,
    exc: ServiceError,
    now: dt.datetime,
    cfg: Config,
    rng: random.Random,
) -> None:
    error = (f"{exc.code}: {exc.message}" + (RATE_LIMITED if exc.retry_after else ""))[:500]
    if not (exc.transient or exc.infrastructure):
        # The ETL refused the step itself: trying it again cannot help.
        with transaction.atomic():
            step.delete()
            RunLink.objects.filter(pk=link.pk).update(last_error=error, updated_at=now)
            _event(
                link, f"ETL recusou a etapa {step.get_kind_display()}: {error}", now, etl="rejected"
            )
        logger.warning("ETL rejected %s of mission %s: %s", step.kind, link.mission_id, error)
        return
    attempts = step.attempts + 1
    at = now + dt.timedelta(seconds=retry_delay(attempts, exc, cfg, rng))
    with transaction.atomic():
        EtlStep.objects.filter(pk=step.pk).update(
            attempts=attempts, next_attempt_at=at, last_error=error
        )
        since = link.failing_since or now
        RunLink.objects.filter(pk=link.pk).update(
            failing_since=since, last_error=error, updated_at=now
        )
        _failure_event(link, step, exc.code, error, at, now)
        link.failing_since = since
    logger.warning(
        "ETL step %s of mission %s failed (%s), retry at %s",
        step.kind,
        link.mission_id,
        exc.code,
        at.isoformat(),
        extra={"mission_id": link.mission_id, "error_code": "ETL_UNAVAILABLE"},
    )


def _open_failure(link: RunLink) -> MissionEvent | None:
    """The event of the outage `link` is in (None: it was not failing)."""
    if link.failing_since is None:
        return None
    return (
        MissionEvent.objects.filter(
            mission_id=link.mission_id, data__etl="failed", created_at__gte=link.failing_since
        )
        .order_by("-id")
        .first()
    )


def _failure_event(
    link: RunLink, step: EtlStep, code: str, error: str, at: dt.datetime, now: dt.datetime
) -> None:
    """One event per outage, not one per failed attempt: created when the mission's
    steps start failing, then updated in place (attempt count, last error, next try)."""
    row = _open_failure(link)
    since = link.failing_since or now
    failures = int(row.data.get("failures", 1)) + 1 if row is not None else 1
    attempts = "1 tentativa falhou" if failures == 1 else f"{failures} tentativas falharam"
    message = (
        f"ETL indisponível desde {since:%H:%M:%S} UTC ({code}): {attempts}; etapa "
        f"{step.get_kind_display()} adiada, nova tentativa às {at:%H:%M:%S} UTC"
    )
    data = {
        "etl": "failed",
        "run_id": link.run_id,
        "step": step.kind,
        "failures": failures,
        "since": since.isoformat(),
        "last_attempt_at": now.isoformat(),
        "last_error": error,
        "retry_at": at.isoformat(),
    }
    if row is None:
        _event(link, message, now, **data)
    else:
        MissionEvent.objects.filter(pk=row.pk).update(message=message[:2000], data=data)


def _recovered(link: RunLink, sent: int, now: dt.datetime) -> None:
    """The ETL answered again: one event for the outage's end (its failure event
    already counts the attempts)."""
    row = _open_failure(link)
    failures = int(row.data.get("failures", 1)) if row is not None else 0
    since = link.failing_since
    RunLink.objects.filter(pk=link.pk).update(failing_since=None, last_error="", updated_at=now)
    link.failing_since = None
    steps = "1 passo enviado" if sent == 1 else f"{sent} passos enviados"
    _event(
        link,
        f"ETL de volta; {steps}"
        + (f" (indisponível desde {since:%H:%M:%S} UTC, {failures} tentativas)" if since else ""),
        now,
        etl="recovered",
        sent=sent,
        failures=failures,
    )


FINAL_LABELS = {"completed": "concluída", "failed": "com falha", "cancelled": "cancelada"}


def sync_state(link: RunLink, pending: int) -> tuple[str, str, str]:
    """(code, pt-BR words, tone) of a run link's sync: `behind` ("atrasado desde ..."),
    `error` ("com erro: ..."), `pending` ("envio pendente") or `up_to_date` ("em dia")."""
    if link.failing_since is not None:
        since = timezone.localtime(link.failing_since)
        return "behind", f"atrasado desde {since:%d/%m %H:%M:%S}", "warn"
    if link.last_error:
        return "error", f"com erro: {link.last_error}", "error"
    if pending:
        return "pending", "envio pendente", "info"
    return "up_to_date", "em dia", "ok"


def link_of(mission: Mission) -> RunLink | None:
    """The mission's run link (from `select_related("etl_run")` when loaded)."""
    try:
        return mission.etl_run
    except RunLink.DoesNotExist:
        return None


def pending_steps(mission: Mission) -> int:
    """Steps still owed to the ETL (the `etl_pending_steps` annotation when present)."""
    annotated = getattr(mission, "etl_pending_steps", None)
    if annotated is not None:
        return int(annotated)
    return EtlStep.objects.filter(mission=mission).count()


def api_link(mission: Mission) -> dict[str, Any] | None:
    """The mission ↔ run link as the API shows it (None: no ETL link)."""
    link = link_of(mission)
    if link is None:
        return None
    pending = pending_steps(mission)
    code, words, _ = sync_state(link, pending)
    return {
        "run_id": link.run_id or None,
        "origin": link.origin,
        "origin_display": link.get_origin_display(),
        "owner": link.live,
        "sync": code,
        "sync_display": words,
        "failing_since": link.failing_since,
        "last_ok_at": link.last_ok_at,
        "last_error": link.last_error,
        "pending_steps": pending,
        "finalized_status": link.finalized_status or None,
    }


def panel(mission: Mission) -> dict[str, Any] | None:
    """What the mission page shows of its ETL run (pt-BR), or None without one."""
    link = RunLink.objects.filter(mission=mission).first()
    if link is None:
        return None
    pending = EtlStep.objects.filter(mission=mission).count()
    _, state, tone = sync_state(link, pending)
    return {
        "run_id": link.run_id or "ainda não criada",
        "origin": link.get_origin_display(),
        "state": state,
        "tone": tone,
        "pending": pending,
        "pending_words": "1 etapa a enviar" if pending == 1 else f"{pending} etapas a enviar",
        "last_ok_at": link.last_ok_at,
        "final": FINAL_LABELS.get(link.finalized_status, ""),
        "last_error": link.last_error,
    }
