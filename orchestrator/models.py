"""How missions run: missions and their items, browser sessions on workers, the event
log and the orchestrator processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q

from mission_control import extensions
from mission_control.crypto import EncryptedTextField
from orchestrator import states
from orchestrator.states import (
    ERROR_CODE_CHOICES,
    ItemStatus,
    MissionStatus,
    SessionStatus,
)

# The `mission_transition` hook (`mission_control.extensions`): its providers are called
# inside every mission transition's transaction with ([missions], to, now). The ETL
# outbox registers one in `OrchestratorConfig.ready` (it records the transition with the
# state it reports), so the model does not import the modules built on it.
TRANSITION_HOOK = "mission_transition"


def after_transition(missions: Sequence[Mission], to: str, now: dt.datetime) -> None:
    """Run the `mission_transition` providers (inside the transition's transaction)."""
    for hook in extensions.providers(TRANSITION_HOOK):
        hook(missions, to, now)


class Leased(models.Model):
    """The lease columns of a row that processes claim (`orchestrator.leases`): who holds
    it, until when (database clock), and the token every write after an external call
    is fenced by."""

    locked_by = models.CharField(max_length=200, blank=True, default="")
    locked_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


class Mission(Leased):
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253, db_index=True)
    status = models.CharField(
        max_length=16, choices=MissionStatus.choices, default=MissionStatus.QUEUED
    )
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    # 1-based: the first run is attempt 1.
    attempt = models.PositiveIntegerField(default=1)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    writer = models.ForeignKey(
        "registry.Writer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The uploader's URL of the finished mission's export, when uploads are on.
    export_upload_url = models.CharField(max_length=2048, blank=True, default="")
    schedule = models.ForeignKey(
        "orchestrator.RecurringMission",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="missions",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    etl_run_id = models.CharField(max_length=100, blank=True, default="")

    # Checkpoints
    atribuido_at = models.DateTimeField(null=True, blank=True)
    extraindo_at = models.DateTimeField(null=True, blank=True)
    armazenando_at = models.DateTimeField(null=True, blank=True)
    finalizado_at = models.DateTimeField(null=True, blank=True)

    error_code = models.CharField(max_length=40, blank=True, default="", choices=ERROR_CODE_CHOICES)
    error_message = models.TextField(blank=True, default="")
    # Why the mission is waiting (no capacity, writer offline, ...); empty when not.
    wait_reason = models.CharField(max_length=500, blank=True, default="")
    session_rotations = models.PositiveIntegerField(default=0)

    # Counters, changed in the same transaction as the items they count.
    total_items = models.PositiveIntegerField(default=0)
    done_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    records_delivered = models.PositiveIntegerField(default=0)
    # Quality gate (orchestrator/quality.py): a FINALIZADO mission that failed its
    # site's rules, and which rules ({"rule", "message", "expected", "actual"}).
    needs_review = models.BooleanField(default=False)
    review_failures = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "missão"
        verbose_name_plural = "missões"
        ordering = ["-id"]
        indexes = [
            # allocation.claim_missions: due QUEUED missions by priority, then age.
            models.Index(
                F("priority").desc(),
                "id",
                name="mission_due_idx",
                condition=Q(status="QUEUED"),
            ),
            # MissionManager: running missions to advance.
            models.Index(
                fields=["status", "id"],
                name="mission_running_idx",
                condition=Q(status__in=["ATRIBUIDO", "EXTRAINDO", "ARMAZENANDO"]),
            ),
            # API and dashboard lists filtered by status, newest first.
            models.Index(fields=["status", "-id"], name="mission_status_list_idx"),
            models.Index(fields=["-created_at"], name="mission_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(done_items__lte=F("total_items"))
                & Q(failed_items__lte=F("total_items")),
                name="mission_counters_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    @property
    def pending_items(self) -> int:
        return max(0, self.total_items - self.done_items - self.failed_items)

    @property
    def progress(self) -> float:
        if not self.total_items:
            return 0.0
        return (self.done_items + self.failed_items) / self.total_items

    @property
    def is_terminal(self) -> bool:
        return self.status in states.TERMINAL

    def transition(
        self,
        to: str,
        *,
        now: dt.datetime,
        message: str = "",
        error_code: str | None = None,
        actor: str = "",
        lease_token: int | None = None,
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set from the status this instance holds to `to`, writing the
        checkpoint and a MissionEvent in the same transaction. Returns whether this
        call won; on success the instance reflects the new row."""
        src = self.status
        if not states.can_transition(src, to):
            raise ValueError(f"illegal transition {src} -> {to}")
        updates: dict[str, Any] = dict(fields)
        updates["status"] = to
        updates["updated_at"] = now
        checkpoint = states.CHECKPOINTS.get(to)
        if checkpoint:
            updates.setdefault(checkpoint, now)
        if error_code is not None:
            # Passing error_code sets it (an empty one clears the last error).
            updates["error_code"] = error_code
            updates.setdefault("error_message", message if error_code else "")
        qs = Mission.objects.filter(pk=self.pk, status=src)
        if lease_token is not None:
            qs = qs.filter(lease_token=lease_token)
        with transaction.atomic():
            if qs.update(**updates) != 1:
                return False
            MissionEvent.objects.create(
                mission_id=self.pk,
                kind=MissionEvent.Kind.TRANSITION,
                from_status=src,
                to_status=to,
                attempt=updates.get("attempt", self.attempt),
                error_code=error_code or "",
                message=message,
                actor=actor,
                data=data or {},
                created_at=now,
            )
            after_transition([self], to, now)
        for key, value in updates.items():
            setattr(self, key, value)
        from orchestrator import events

        events.publish(f"mission.{to.lower()}", mission_id=self.pk)
        return True

    def log(
        self,
        kind: str,
        message: str,
        *,
        now: dt.datetime,
        error_code: str = "",
        data: dict[str, Any] | None = None,
    ) -> MissionEvent:
        return MissionEvent.objects.create(
            mission_id=self.pk,
            kind=kind,
            attempt=self.attempt,
            error_code=error_code,
            message=message,
            data=data or {},
            created_at=now,
        )


class MissionItem(models.Model):
    # No index of its own: (mission, url) and (mission, status, id) both start with it,
    # and a third index would be written on every insert and status change of an item.
    mission = models.ForeignKey(
        Mission, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    url = models.URLField(max_length=2048)
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    session = models.ForeignKey(
        "orchestrator.BrowserSession",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="items",
    )
    job_key = models.CharField(max_length=128, blank=True, default="")
    error_code = models.CharField(max_length=40, blank=True, default="", choices=ERROR_CODE_CHOICES)
    error_message = models.TextField(blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Ids of proxies that failed this item, so it is not handed to them again.
    failed_proxies = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "item de missão"
        verbose_name_plural = "itens de missão"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["mission", "url"], name="item_unique_url_per_mission")
        ]
        indexes = [
            # WorkerManager: pending items of a mission; API: items by status.
            models.Index(fields=["mission", "status", "id"], name="item_mission_status_idx"),
            # Returning a session's unfinished items to pending.
            models.Index(
                fields=["session"], name="item_session_idx", condition=Q(status="assigned")
            ),
            # Overview: items finished per hour over the last 24 h and in the last 10 min
            # (dashboard.queries.overview), an index-only range scan.
            models.Index(
                fields=["finished_at"],
                name="item_finished_idx",
                condition=Q(finished_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.url


class ItemEvidence(models.Model):
    """What an item's last failed attempt looked like (worker-api.md v1.1 `snapshot`),
    scrubbed of credentials before it is stored. One row per item, replaced by each
    later failed attempt that brought a snapshot."""

    item = models.OneToOneField(MissionItem, on_delete=models.CASCADE, related_name="evidence")
    attempt = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True, default="")
    final_url = models.CharField(max_length=2048, blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    html_excerpt = models.TextField(blank=True, default="")
    block_marker = models.CharField(max_length=40, blank=True, default="")
    # The screenshot's file under settings.EVIDENCE_DIR (mission_control.evidence_files),
    # relative; "" when the worker sent none. Never the image itself.
    screenshot_file = models.CharField(max_length=300, blank=True, default="")
    # The uploader's URL of this snapshot, when uploads are on.
    upload_url = models.CharField(max_length=2048, blank=True, default="")
    captured_at = models.DateTimeField()

    class Meta:
        verbose_name = "evidência do item"
        verbose_name_plural = "evidências dos itens"

    def __str__(self) -> str:
        return f"evidence of item {self.item_id}"


class BrowserSession(Leased):
    mission = models.ForeignKey(Mission, on_delete=models.CASCADE, related_name="sessions")
    worker = models.ForeignKey("registry.Worker", on_delete=models.PROTECT, related_name="sessions")
    proxy = models.ForeignKey(
        "registry.Proxy",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sessions",
    )
    attempt = models.PositiveIntegerField(default=1, help_text="Mission attempt it serves.")
    session_key = models.CharField(max_length=128, unique=True)
    remote_id = models.CharField(max_length=128, blank=True, default="")
    # The provider's own id of the browser (e.g. a Browserbase session id), when remote.
    provider_session_id = models.CharField(max_length=128, blank=True, default="")
    # The provider's live inspector of that browser (Browserbase's debuggerFullscreenUrl).
    provider_inspect_url = models.CharField(max_length=2000, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=SessionStatus.choices, default=SessionStatus.REQUESTED
    )
    phase = models.CharField(max_length=64, blank=True, default="")
    # Why a live session is to be closed when its current job ends ("" = it is not):
    # its proxy got blocked for its site, or its error score passed the limit. It
    # gets no new job and the SessionManager opens its replacement at once.
    retire_reason = models.CharField(max_length=200, blank=True, default="")
    provider = models.CharField(max_length=32, default="local")
    engine = models.CharField(max_length=10, default="http")
    # Denormalized from the proxy at allocation, for the distributor and for history.
    proxy_external_id = models.CharField(max_length=100, blank=True, default="")
    proxy_type = models.CharField(max_length=16, blank=True, default="")
    proxy_country = models.CharField(max_length=2, blank=True, default="")
    # True while this session counts against its worker's and proxy's active_sessions.
    holds_slot = models.BooleanField(default=True)
    # Which of its worker's `max_sessions` slots and its proxy's `max_sessions` uses the
    # session holds (0-based, below the limit at allocation). Unique among the sessions
    # that hold a slot: the database's backstop against a worker or proxy being handed
    # out beyond its limit, whatever the counters say.
    worker_slot = models.PositiveSmallIntegerField(null=True, blank=True)
    proxy_slot = models.PositiveSmallIntegerField(null=True, blank=True)
    # The mission's domain and which of its `max_concurrent_sessions` slots the session
    # holds (orchestrator/domain_slots.py); null when the domain has no cap.
    domain = models.CharField(max_length=253, blank=True, default="")
    domain_slot = models.PositiveSmallIntegerField(null=True, blank=True)

    # The current job (one at a time per session).
    job_seq = models.PositiveIntegerField(default=0)
    job_key = models.CharField(max_length=128, blank=True, default="")
    job_remote_id = models.CharField(max_length=128, blank=True, default="")
    job_status = models.CharField(max_length=16, blank=True, default="")
    job_cursor = models.TextField(blank=True, default="")
    job_pages = models.PositiveIntegerField(default=0)
    job_started_at = models.DateTimeField(null=True, blank=True)
    jobs_done = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    # Crawlee-style error score (orchestrator/proxy_health.py): +1 per proxy fault,
    # -0.5 per success; the session retires at 3.
    error_score = models.FloatField(default=0.0)

    last_activity_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True, default="", choices=ERROR_CODE_CHOICES)
    error_message = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sessão de navegador"
        verbose_name_plural = "sessões de navegador"
        ordering = ["-id"]
        indexes = [
            # SessionManager / WorkerManager: live sessions by status.
            models.Index(
                fields=["status", "worker"],
                name="session_live_idx",
                condition=Q(status__in=["requested", "creating", "ready", "busy", "closing"]),
            ),
            # Counting and recomputing slots held per worker / proxy.
            models.Index(
                fields=["worker", "proxy"], name="session_holds_idx", condition=Q(holds_slot=True)
            ),
            models.Index(fields=["mission", "status"], name="session_mission_idx"),
        ]
        constraints = [
            # allocate_sessions: the slot numbers held on a worker / proxy (these unique
            # indexes also serve that lookup).
            models.UniqueConstraint(
                fields=["worker", "worker_slot"],
                condition=Q(holds_slot=True),
                name="session_one_per_worker_slot",
            ),
            models.UniqueConstraint(
                fields=["proxy", "proxy_slot"],
                condition=Q(holds_slot=True),
                name="session_one_per_proxy_slot",
            ),
            # domain_slots.DomainSlots.load: the slots held on a domain (this unique
            # index also serves that lookup).
            models.UniqueConstraint(
                fields=["domain", "domain_slot"],
                condition=Q(holds_slot=True),
                name="session_one_per_domain_slot",
            ),
            models.CheckConstraint(
                condition=Q(holds_slot=False) | Q(worker_slot__isnull=False),
                name="session_holding_has_worker_slot",
            ),
            models.CheckConstraint(
                condition=Q(holds_slot=False) | Q(proxy__isnull=True) | Q(proxy_slot__isnull=False),
                name="session_holding_has_proxy_slot",
            ),
        ]

    def __str__(self) -> str:
        return self.session_key


class MissionEvent(models.Model):
    class Kind(models.TextChoices):
        TRANSITION = "transition", "Transição"
        SESSION = "session", "Sessão"
        JOB = "job", "Job"
        ITEM = "item", "Item"
        WRITER = "writer", "Writer"
        ALLOCATION = "allocation", "Alocação"
        INFO = "info", "Info"
        ERROR = "error", "Erro"

    mission = models.ForeignKey(Mission, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    error_code = models.CharField(max_length=40, blank=True, default="")
    message = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=150, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "evento"
        verbose_name_plural = "eventos"
        ordering = ["-id"]
        indexes = [
            # Mission timeline (API, dashboard): events of a mission by time.
            models.Index(fields=["mission", "-id"], name="event_mission_idx"),
            # Latest errors on the overview.
            models.Index(fields=["-id"], name="event_errors_idx", condition=~Q(error_code="")),
            # Overview (dashboard.queries.ended_since): missions that ended, FINALIZADO or
            # ERRO, today and in the last 24 h, newest first, at most COUNT_CAP of them;
            # to_status is included so the scan never visits the table.
            models.Index(
                fields=["-created_at"],
                include=["to_status"],
                name="event_ended_idx",
                condition=Q(kind="transition", to_status__in=["FINALIZADO", "ERRO"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_status}->{self.to_status} {self.message[:40]}"


class OrchestratorInstance(models.Model):
    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    managers = models.JSONField(default=list)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    event_bus = models.CharField(max_length=16, default="polling")
    # {manager: {"last_tick_at", "duration_ms", "did", "error", "error_at", "ticks"}}
    stats = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "instância do orquestrador"
        verbose_name_plural = "instâncias do orquestrador"
        ordering = ["-heartbeat_at"]

    def __str__(self) -> str:
        return self.name


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Pular (e registrar)"
    QUEUE = "queue", "Enfileirar após a anterior"
    CANCEL_PREVIOUS = "cancel_previous", "Cancelar a anterior"


class RecurringMission(models.Model):
    """A mission template created again on a cron schedule (django-q2 runs it)."""

    name = models.CharField(max_length=200)
    cron = models.CharField(max_length=100, help_text="Cron expression, e.g. '0 6 * * *'.")
    timezone = models.CharField(max_length=64, default="America/Sao_Paulo")
    urls = models.JSONField(default=list)
    domain = models.CharField(max_length=253, blank=True, default="")
    # No URLs: each run resumes an ETL run's pending items: "latest" (or blank) takes
    # the domain's latest unfinished run, a run id that run (docs/contracts/etl-api.md).
    etl_run = models.CharField(max_length=100, blank=True, default="")
    priority = models.IntegerField(default=0)
    writer = models.ForeignKey(
        "registry.Writer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # What a run does while the previous mission of this schedule is still active.
    overlap_policy = models.CharField(
        max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.QUEUE
    )
    # A run held back by the `queue` policy, created when the previous mission ends.
    queued_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "missão recorrente"
        verbose_name_plural = "missões recorrentes"
        ordering = ["name"]
        indexes = [
            # tasks.run_due_schedules: enabled schedules that are due.
            models.Index(
                fields=["next_run_at"], name="recurring_due_idx", condition=Q(enabled=True)
            )
        ]

    def __str__(self) -> str:
        return self.name


class ScheduleRun(models.Model):
    """What one due run of a recurring mission did: never a silent skip."""

    class Outcome(models.TextChoices):
        CREATED = "created", "Missão criada"
        SKIPPED = "skipped", "Pulada (anterior ativa)"
        QUEUED = "queued", "Enfileirada (anterior ativa)"
        CANCELLED_PREVIOUS = "cancelled_previous", "Anterior cancelada"
        FAILED = "failed", "Falhou"

    schedule = models.ForeignKey(RecurringMission, on_delete=models.CASCADE, related_name="runs")
    due_at = models.DateTimeField()
    ran_at = models.DateTimeField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    policy = models.CharField(max_length=16, choices=OverlapPolicy.choices)
    # Occurrences that passed while nothing ran (run once on recovery).
    missed = models.PositiveIntegerField(default=0)
    mission = models.ForeignKey(
        Mission, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_mission = models.ForeignKey(
        Mission, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "execução de agendamento"
        verbose_name_plural = "execuções de agendamento"
        ordering = ["-id"]
        indexes = [
            # API and admin: the runs of one schedule, newest first.
            models.Index(fields=["schedule", "-id"], name="schedule_run_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} {self.due_at:%Y-%m-%d %H:%M} {self.outcome}"


class WebhookEndpoint(models.Model):
    """A URL that receives signed JSON deliveries of the events it subscribed to."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=2048)
    # Secret: encrypted at rest, write-only in the API, masked in admin, never logged.
    secret = EncryptedTextField(max_length=200)
    # Event names or prefixes ending in "*" ("mission.*", "*").
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "webhook"
        verbose_name_plural = "webhooks"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def wants(self, event: str) -> bool:
        for pattern in self.events or ():
            if pattern == event or (pattern.endswith("*") and event.startswith(pattern[:-1])):
                return True
        return False


class WebhookDelivery(Leased):
    class Status(models.TextChoices):
        PENDING = "pending", "Pendente"
        SUCCEEDED = "succeeded", "Entregue"
        FAILED = "failed", "Desistiu"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    # Sent as `Idempotency-Key`: the same on every attempt and replay of this delivery.
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Retries stop after this; empty means `created_at + webhook_max_age_s`.
    retry_until = models.DateTimeField(null=True, blank=True)
    # Set by an operator's replay; the next attempt is logged as a replay.
    replay_requested = models.BooleanField(default=False)

    class Meta:
        verbose_name = "entrega de webhook"
        verbose_name_plural = "entregas de webhook"
        ordering = ["-id"]
        indexes = [
            # webhooks.deliver_due: pending deliveries that are due.
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_due_idx",
                condition=Q(status="pending"),
            ),
            # API and admin: deliveries of an endpoint, newest first.
            models.Index(fields=["endpoint", "-id"], name="webhook_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    response_body = models.TextField(blank=True, default="")
    replay = models.BooleanField(default=False)

    class Meta:
        verbose_name = "tentativa de webhook"
        verbose_name_plural = "tentativas de webhook"
        ordering = ["delivery", "number"]
        indexes = [models.Index(fields=["delivery", "number"], name="webhook_attempt_idx")]

    def __str__(self) -> str:
        return f"#{self.number} {self.status_code or self.error[:30]}"


class ProxyDomainHealth(models.Model):
    """How one proxy fares on one domain, learned from results and shared by every
    process: +1 per failure, -0.5 per success; at the threshold it is blocked for the
    domain for a while."""

    proxy = models.ForeignKey(
        "registry.Proxy", on_delete=models.CASCADE, related_name="domain_health"
    )
    domain = models.CharField(max_length=253)
    score = models.FloatField(default=0.0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    blocked_until = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.CharField(max_length=500, blank=True, default="")
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "saúde de proxy por site"
        verbose_name_plural = "saúde de proxy por site"
        ordering = ["domain", "-score"]
        constraints = [
            models.UniqueConstraint(fields=["proxy", "domain"], name="proxy_domain_unique")
        ]
        indexes = [
            # proxy_health.blocked_ids: proxies blocked for a domain right now.
            models.Index(
                fields=["domain", "blocked_until"],
                name="proxy_domain_blocked_idx",
                condition=Q(blocked_until__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.proxy_id}@{self.domain} {self.score:g}"

    def is_blocked(self, now: dt.datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


class QualityFieldCount(models.Model):
    """Records of a mission that carried a required field (and `__records__`: all
    records), counted page by page in the transaction that saves the page."""

    RECORDS = "__records__"

    mission = models.ForeignKey(Mission, on_delete=models.CASCADE, related_name="field_counts")
    field = models.CharField(max_length=200)
    present = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "contagem de campo"
        verbose_name_plural = "contagens de campo"
        constraints = [
            models.UniqueConstraint(fields=["mission", "field"], name="quality_field_unique")
        ]

    def __str__(self) -> str:
        return f"{self.mission_id}:{self.field}={self.present}"


class DomainBreaker(models.Model):
    """Per-site circuit breaker (orchestrator/site_breaker.py): when a domain's block
    rate or failed sessions cross thresholds in a window it is paused (no new
    sessions), then probed after a cool-down; an operator may resume it."""

    class State(models.TextChoices):
        CLOSED = "closed", "Normal"
        OPEN = "open", "Pausado"
        PROBING = "probing", "Em teste"

    domain = models.CharField(max_length=253, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    paused_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True, default="")
    # Counters of the current window.
    window_started_at = models.DateTimeField(null=True, blank=True)
    results = models.PositiveIntegerField(default=0)
    blocked = models.PositiveIntegerField(default=0)
    trips = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.CharField(max_length=150, blank=True, default="")
    resumed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "disjuntor de site"
        verbose_name_plural = "disjuntores de site"
        ordering = ["domain"]

    def __str__(self) -> str:
        return f"{self.domain} ({self.state})"

    def is_paused(self, now: dt.datetime) -> bool:
        return (
            self.state == self.State.OPEN
            and self.paused_until is not None
            and self.paused_until > now
        )


class ItemThroughput(models.Model):
    """Items finished per minute: a counter kept by the database (a statement-level
    trigger on MissionItem on PostgreSQL, migration 0006), so the overview's items/min
    and 24 h chart read at most 24 x 60 x SHARDS small rows instead of counting the
    items. Each connection adds to the shard `pg_backend_pid() % SHARDS` of a minute,
    so concurrent orchestrators rarely wait on the same row. On SQLite the overview
    counts the items directly and this table stays empty."""

    SHARDS = 8

    minute = models.DateTimeField()
    shard = models.PositiveSmallIntegerField(default=0)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "vazão de itens"
        verbose_name_plural = "vazão de itens"
        constraints = [
            # The trigger's ON CONFLICT target; the overview's range scan by minute.
            models.UniqueConstraint(fields=["minute", "shard"], name="throughput_minute_shard")
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} #{self.shard}: {self.n}"


# The ETL link and outbox (orchestrator/etl_outbox.py).
from orchestrator.etl_models import EtlRun as EtlRun  # noqa: E402
from orchestrator.etl_models import EtlStep as EtlStep  # noqa: E402
