"""The mission ↔ ETL run link and the ETL outbox (docs/contracts/etl-api.md, revised).

`EtlRun`: which run a mission owns, whether it created or resumed it, and how far its
sync is. At most one *live* mission owns a run (a partial unique constraint): `live`
is written in the same transaction as the mission's transitions.

`EtlStep`: one ETL call still owed (create the run, item updates, finalize), written in
the same transaction as the state it reports and deleted only after the ETL
acknowledged it. `key` is the call's idempotency key, the same on every retry.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class EtlRun(models.Model):
    class Origin(models.TextChoices):
        CREATED = "created", "criada"
        RESUMED = "resumed", "retomada"

    mission = models.OneToOneField(
        "orchestrator.Mission", on_delete=models.CASCADE, related_name="etl_run"
    )
    domain = models.CharField(max_length=253)
    # Empty until the ETL created the run (it may have been down at creation).
    run_id = models.CharField(max_length=100, blank=True, default="")
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.CREATED)
    live = models.BooleanField(default=True)
    # The ETL's item id of each URL of the run ({url: id}), learnt when created/resumed.
    item_ids = models.JSONField(default=dict, blank=True)
    # Sync state: the last acknowledged step, and since when steps fail (None: em dia).
    last_ok_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    finalized_status = models.CharField(max_length=16, blank=True, default="")
    # Lease on the mission's steps while one sender sends them (no lock over HTTP).
    locked_by = models.CharField(max_length=200, blank=True, default="")
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "execução ETL"
        verbose_name_plural = "execuções ETL"
        constraints = [
            models.UniqueConstraint(
                fields=["run_id"],
                condition=Q(live=True) & ~Q(run_id=""),
                name="etl_run_one_live_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id or '(a criar)'} · missão #{self.mission_id}"


class EtlStep(models.Model):
    class Kind(models.TextChoices):
        CREATE = "create", "criar execução"
        ITEMS = "items", "atualizar itens"
        FINALIZE = "finalize", "finalizar"

    mission = models.ForeignKey(
        "orchestrator.Mission", on_delete=models.CASCADE, related_name="etl_steps"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    payload = models.JSONField(default=dict, blank=True)
    key = models.CharField(max_length=100, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "etapa ETL pendente"
        verbose_name_plural = "etapas ETL pendentes"
        ordering = ["id"]
        indexes = [models.Index(fields=["mission", "id"], name="etl_step_mission_idx")]

    def __str__(self) -> str:
        return f"{self.kind} · missão #{self.mission_id} ({self.key})"
