"""An append-only log of who changed what: field names only, never values."""

from __future__ import annotations

from typing import Any, NoReturn

from django.db import models


class AppendOnly(Exception):
    """Audit rows are never changed or deleted through the application."""


class AuditLogQuerySet(models.QuerySet["AuditLog"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnly("audit log rows cannot be updated")

    def delete(self) -> NoReturn:
        raise AppendOnly("audit log rows cannot be deleted")


class AuditLog(models.Model):
    class Action(models.TextChoices):
        CREATE = "create", "Criação"
        UPDATE = "update", "Alteração"
        DELETE = "delete", "Exclusão"
        CONNECTION_TEST = "connection_test", "Teste de conexão"
        LOGIN = "login", "Login"
        LOGIN_FAILED = "login_failed", "Login recusado"
        LOGOUT = "logout", "Logout"

    created_at = models.DateTimeField(db_index=True)
    # No foreign key: deleting a user must neither touch nor lose its audit rows.
    actor = models.CharField(max_length=150)
    actor_id = models.BigIntegerField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    model = models.CharField(max_length=100, blank=True, default="", help_text="app.model")
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    # Names of the changed fields; secrets appear by name only.
    fields = models.JSONField(default=list, blank=True)
    # Non-secret outcome data (e.g. a connection test's ok, status class, latency).
    data = models.JSONField(default=dict, blank=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        verbose_name = "registro de auditoria"
        verbose_name_plural = "registros de auditoria"
        ordering = ["-id"]
        indexes = [
            # Admin: the history of one object.
            models.Index(fields=["model", "object_id", "-id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        what = f" {self.model}#{self.object_id}" if self.model else ""
        return f"{self.actor} {self.action}{what}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("audit log rows cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnly("audit log rows cannot be deleted")
