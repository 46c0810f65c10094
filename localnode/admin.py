"""Admin for the local node: its one setting is editable; machine-written rows are
read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from localnode.models import (
    LocalBatch,
    LocalCompletion,
    LocalJob,
    LocalRecord,
    LocalSession,
    LocalWorkerState,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LocalWorkerState)
class LocalWorkerStateAdmin(admin.ModelAdmin):
    list_display = ["__str__", "max_sessions", "runner_name", "runner_seen_at"]
    readonly_fields = ["runner_name", "runner_seen_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not LocalWorkerState.objects.exists()


@admin.register(LocalSession)
class LocalSessionAdmin(ReadOnlyAdmin):
    list_display = ["session_key", "status", "phase", "engine", "proxy_id", "last_activity_at"]
    list_filter = ["status", "engine"]
    search_fields = ["session_key", "proxy_id"]
    exclude = ["proxy_url"]  # carries the proxy's credentials


@admin.register(LocalJob)
class LocalJobAdmin(ReadOnlyAdmin):
    list_display = ["job_key", "status", "total", "done", "failed", "started_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["job_key"]
    list_select_related = ["session"]
    exclude = ["items"]


@admin.register(LocalBatch)
class LocalBatchAdmin(ReadOnlyAdmin):
    list_display = ["batch_key", "mission_id", "stored", "duplicates", "created_at"]
    search_fields = ["batch_key"]


@admin.register(LocalRecord)
class LocalRecordAdmin(ReadOnlyAdmin):
    list_display = ["mission_id", "item_id", "http_status", "fetched_at"]
    search_fields = ["item_id", "url"]
    raw_id_fields = ["batch"]


@admin.register(LocalCompletion)
class LocalCompletionAdmin(ReadOnlyAdmin):
    list_display = ["mission_id", "run_id", "total_records", "completed_at"]
