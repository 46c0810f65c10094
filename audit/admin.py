from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the application and never changed."""

    list_display = ("created_at", "actor", "action", "model", "object_repr", "changed")
    list_filter = ("action", "model")
    search_fields = ("actor", "object_repr", "object_id")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "actor",
        "actor_id",
        "ip",
        "action",
        "model",
        "object_id",
        "object_repr",
        "fields",
        "data",
    )

    @admin.display(description="Campos")
    def changed(self, obj: AuditLog) -> str:
        return ", ".join(obj.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
