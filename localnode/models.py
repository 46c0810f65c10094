"""The built-in worker (sessions, jobs, results) and writer (batches, records).

Everything the local node knows lives in these tables, so a restart of the web
process or of ``run_localnode`` loses nothing: a job whose runner died is handed out
again when its lease expires, and it resumes after the items that already have a result.
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q

from mission_control.crypto import EncryptedTextField

DEFAULT_MAX_SESSIONS = 8
MAX_BATCH_RECORDS = 500


class LocalWorkerState(models.Model):
    """One row (pk=1): the local worker's settings and the runner's heartbeat.

    Creating a session locks this row, so the capacity check and the insert cannot
    interleave between two requests.
    """

    max_sessions = models.PositiveIntegerField(default=DEFAULT_MAX_SESSIONS)
    runner_name = models.CharField(max_length=200, blank=True, default="")
    runner_seen_at = models.DateTimeField(null=True, blank=True)
    # The last refusal of a provider's credentials (e.g. Browserbase 401): the worker
    # answers `degraded` on /health while it is set. Never holds a secret.
    provider_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        verbose_name = "estado do worker local"
        verbose_name_plural = "estado do worker local"

    def __str__(self) -> str:
        return f"localnode (max {self.max_sessions})"

    @classmethod
    def get(cls) -> LocalWorkerState:
        state, _ = cls.objects.get_or_create(pk=1)
        return state


class LocalSession(models.Model):
    class Status(models.TextChoices):
        CREATING = "creating"
        READY = "ready"
        BUSY = "busy"
        STUCK = "stuck"
        DISCONNECTED = "disconnected"
        FAILED = "failed"
        CLOSED = "closed"

    # Sessions in these states hold one of the worker's slots.
    HOLDING = (Status.CREATING, Status.READY, Status.BUSY, Status.STUCK)
    ENDED = (Status.FAILED, Status.CLOSED, Status.DISCONNECTED)

    session_key = models.CharField(max_length=128, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    phase = models.CharField(max_length=64, blank=True, default="idle")
    provider = models.CharField(max_length=32, default="local")
    engine = models.CharField(max_length=10, default="http")
    proxy_id = models.CharField(max_length=100, blank=True, default="")
    # Secret (may carry credentials): encrypted at rest, never logged, never returned.
    proxy_url = EncryptedTextField(max_length=1000, blank=True, default="")
    proxy_type = models.CharField(max_length=16, blank=True, default="")
    proxy_country = models.CharField(max_length=2, blank=True, default="")
    timeout_s = models.PositiveIntegerField(default=900)
    labels = models.JSONField(default=dict, blank=True)
    # Remote browser (provider `browserbase`): its id there, where to connect (secret:
    # signed URL, never returned), and when it was released (None: still billing).
    remote_id = models.CharField(max_length=100, blank=True, default="")
    connect_url = models.CharField(max_length=2000, blank=True, default="")
    remote_released_at = models.DateTimeField(null=True, blank=True)
    # The provider's live inspector of this browser (Browserbase's debuggerFullscreenUrl).
    inspect_url = models.CharField(max_length=2000, blank=True, default="")
    current_job = models.ForeignKey(
        "LocalJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_code = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sessão local"
        verbose_name_plural = "sessões locais"
        ordering = ["id"]
        indexes = [
            # Capacity count and GET /sessions: sessions that hold a slot.
            models.Index(
                fields=["status"],
                name="localsession_live_idx",
                condition=Q(status__in=["creating", "ready", "busy", "stuck"]),
            ),
            # GET /sessions (recently ended) and the purge of old sessions.
            models.Index(fields=["closed_at"], name="localsession_closed_idx"),
        ]

    def __str__(self) -> str:
        return self.session_key

    @property
    def public_id(self) -> str:
        return f"s-{self.pk}"

    @property
    def holds_slot(self) -> bool:
        return self.status in self.HOLDING


class LocalJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    session = models.ForeignKey(LocalSession, on_delete=models.CASCADE, related_name="jobs")
    job_key = models.CharField(max_length=128, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    items = models.JSONField(default=list)
    options = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Runner lease, fenced by lease_token: every write of a runner checks its token.
    locked_by = models.CharField(max_length=200, blank=True, default="")
    locked_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "job local"
        verbose_name_plural = "jobs locais"
        ordering = ["id"]
        indexes = [
            # runner.claim_jobs: queued jobs, oldest first.
            models.Index(fields=["id"], name="localjob_queued_idx", condition=Q(status="queued")),
            # runner.requeue_expired: running jobs whose lease ran out.
            models.Index(
                fields=["locked_until"],
                name="localjob_running_idx",
                condition=Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return self.job_key

    @property
    def public_id(self) -> str:
        return f"j-{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class LocalResult(models.Model):
    """One item's outcome. `sequence` numbers a job's results 1, 2, 3… in the order
    they finished; the results cursor is the last sequence a client has seen."""

    job = models.ForeignKey(LocalJob, on_delete=models.CASCADE, related_name="results")
    sequence = models.PositiveIntegerField()
    item_id = models.CharField(max_length=64)
    url = models.URLField(max_length=2048)
    status = models.CharField(max_length=8)  # ok | error
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    final_url = models.URLField(max_length=2048, blank=True, default="")
    fetched_at = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # worker-api.md v1.1: what a failed page looked like (scrubbed of credentials).
    snapshot = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "resultado local"
        verbose_name_plural = "resultados locais"
        ordering = ["job", "sequence"]
        constraints = [
            # Also serves GET /jobs/{id}/results (sequence > cursor, in order).
            models.UniqueConstraint(fields=["job", "sequence"], name="localresult_job_seq"),
            # A re-run of a job (expired lease) never records an item twice.
            models.UniqueConstraint(fields=["job", "item_id"], name="localresult_job_item"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.sequence} {self.item_id}"


class LocalBatch(models.Model):
    batch_key = models.CharField(max_length=200, unique=True)
    mission_id = models.BigIntegerField(db_index=True)
    run_id = models.CharField(max_length=100, blank=True, default="")
    mission = models.JSONField(default=dict, blank=True)
    received = models.PositiveIntegerField(default=0)
    stored = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "lote local"
        verbose_name_plural = "lotes locais"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.batch_key

    @property
    def public_id(self) -> str:
        return f"b-{self.pk}"


class LocalRecord(models.Model):
    mission_id = models.BigIntegerField()
    item_id = models.CharField(max_length=64)
    batch = models.ForeignKey(LocalBatch, on_delete=models.CASCADE, related_name="records")
    url = models.URLField(max_length=2048, blank=True, default="")
    fetched_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "registro local"
        verbose_name_plural = "registros locais"
        ordering = ["id"]
        constraints = [
            # The records' natural key; also serves counting and exporting a mission.
            models.UniqueConstraint(fields=["mission_id", "item_id"], name="localrecord_natural"),
        ]

    def __str__(self) -> str:
        return f"{self.mission_id}/{self.item_id}"


class LocalCompletion(models.Model):
    """A mission the writer was told is complete (POST /missions/{id}/complete)."""

    mission_id = models.BigIntegerField(unique=True)
    run_id = models.CharField(max_length=100, blank=True, default="")
    total_records = models.PositiveIntegerField()
    completed_at = models.DateTimeField()

    class Meta:
        verbose_name = "missão concluída (writer local)"
        verbose_name_plural = "missões concluídas (writer local)"

    def __str__(self) -> str:
        return f"{self.mission_id}: {self.total_records}"


def recent_cutoff(now: dt.datetime) -> dt.datetime:
    """Ended sessions stay listed (and their results readable) for 10 minutes."""
    return now - dt.timedelta(minutes=10)


class LocalUpload(models.Model):
    """A file the built-in uploader stored (uploader-api.md) under the data folder
    (``settings.LOCALNODE_UPLOADS_DIR``); served only to logged-in users."""

    upload_key = models.CharField(max_length=128, unique=True)
    mission_id = models.BigIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=40, blank=True, default="")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    relpath = models.CharField(max_length=512)
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "arquivo enviado"
        verbose_name_plural = "arquivos enviados"

    def __str__(self) -> str:
        return self.upload_key
