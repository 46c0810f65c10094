"""Admin of the orchestrator. Rows written by machines (items, sessions, events,
instances) are read-only; missions change state only through `orchestrator.actions`."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from orchestrator import actions, etl_outbox
from orchestrator.models import (
    BrowserSession,
    DomainBreaker,
    Mission,
    MissionEvent,
    MissionItem,
    OrchestratorInstance,
    OverlapPolicy,
    ProxyDomainHealth,
    RecurringMission,
    ScheduleRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from orchestrator.schedules import next_run
from orchestrator.states import ItemStatus
from orchestrator.status import validate_cron, validate_timezone
from registry.models import normalize_domain

DETAIL_EVENTS = 20
DETAIL_SESSIONS = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the orchestrator: look, never touch."""

    # Django 5.2 warns about forms.URLField's default scheme changing in 6.0.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _table(headers: list[str], rows: list[tuple[Any, ...]], empty: str) -> SafeString:
    if not rows:
        return format_html("<em>{}</em>", empty)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (format_html_join("", "<td>{}</td>", ((c if c is not None else "",) for c in row)),)
            for row in rows
        ),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


class MissionAddForm(forms.ModelForm):
    """Adding a mission goes through `actions.create_mission`, with URLs or resuming an
    ETL run (no URLs: the latest unfinished run of the domain, or `etl_run`). The
    mission is created while the form is cleaned, so whatever the action refuses (bad
    URLs, a run owned by a live mission, the ETL down) is shown as a form error, never
    a 500: the same rules and messages as the API's 4xx."""

    urls = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 100}),
        help_text="Uma URL por linha; duplicadas são ignoradas. Vazio: retoma a última "
        "execução ETL não concluída do domínio.",
    )
    etl_run = forms.RegexField(
        label="Execução ETL a retomar",
        regex=r"^[A-Za-z0-9._:-]{1,100}$",
        required=False,
        help_text='O id de uma execução ETL (ou "latest": a última do domínio); seus '
        "itens pendentes viram as URLs da missão.",
    )
    user: Any = None  # set per request by MissionAdmin.get_form

    class Meta:
        model = Mission
        fields = ["name", "domain", "priority", "writer"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].required = False
        self.fields[
            "domain"
        ].help_text = (
            "Derivado das URLs quando vazio; sem URLs, o domínio cuja execução ETL retomar."
        )
        self.mission: Mission | None = None

    def clean_urls(self) -> list[str]:
        lines = [line for line in self.cleaned_data["urls"].splitlines() if line.strip()]
        if not lines:
            return []
        try:
            return actions.clean_urls(lines).urls
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("urls", exc.messages)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and not (data.get("urls") or data.get("domain") or data.get("etl_run")):
            self.add_error("urls", "Informe as URLs, ou o domínio/execução ETL a retomar.")
        return data

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        data = self.cleaned_data
        try:
            self.mission = actions.create_mission(
                name=data.get("name") or "",
                urls=data.get("urls") or [],
                domain=data.get("domain") or "",
                etl_run=data.get("etl_run") or None,
                priority=data.get("priority") or 0,
                writer=data.get("writer"),
                user=self.user,
            )
        except ValidationError as exc:
            for field, messages_ in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages_)
        except etl_outbox.EtlRefused as exc:
            self.add_error("etl_run" if data.get("etl_run") else None, exc.message)


@admin.register(Mission)
class MissionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "domain",
        "status_badge",
        "priority",
        "attempt",
        "progress_display",
        "created_at",
    ]
    list_display_links = ["id", "name"]
    list_filter = ["status", "needs_review", "domain"]
    search_fields = ["name", "domain", "=id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    actions = ["cancel_missions", "retry_missions"]
    fieldsets = [
        (None, {"fields": ["name", "domain", "status", "priority", "writer", "schedule"]}),
        (
            "Execução",
            {
                "fields": [
                    "attempt",
                    "next_attempt_at",
                    "wait_reason",
                    "error_code",
                    "error_message",
                    "session_rotations",
                    "progress_display",
                    "counters",
                    "etl_run_id",
                ]
            },
        ),
        (
            "Checkpoints",
            {"fields": ["atribuido_at", "extraindo_at", "armazenando_at", "finalizado_at"]},
        ),
        ("Controle de qualidade", {"fields": ["needs_review", "review_failures_list"]}),
        ("Itens por status", {"fields": ["item_counts"]}),
        ("Sessões", {"fields": ["sessions_table"]}),
        (f"Últimos {DETAIL_EVENTS} eventos", {"fields": ["events_table"]}),
        (
            "Controle",
            {
                "classes": ["collapse"],
                "fields": [
                    "locked_by",
                    "locked_until",
                    "lease_token",
                    "created_by",
                    "created_at",
                    "updated_at",
                ],
            },
        ),
    ]
    # Everything the orchestrator writes; state changes go through the actions.
    readonly_fields = [
        "needs_review",
        "review_failures_list",
        "domain",
        "status",
        "schedule",
        "attempt",
        "next_attempt_at",
        "wait_reason",
        "error_code",
        "error_message",
        "session_rotations",
        "progress_display",
        "counters",
        "etl_run_id",
        "atribuido_at",
        "extraindo_at",
        "armazenando_at",
        "finalizado_at",
        "item_counts",
        "sessions_table",
        "events_table",
        "locked_by",
        "locked_until",
        "lease_token",
        "created_by",
        "created_at",
        "updated_at",
    ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = type("MissionAddForm", (MissionAddForm,), {"user": request.user})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["name", "domain", "priority", "writer", "urls", "etl_run"]})]
        return super().get_fieldsets(request, obj)

    @admin.display(description="Regras reprovadas")
    def review_failures_list(self, obj: Mission) -> SafeString:
        return _table(
            ["Regra", "Detalhe"],
            [(f.get("rule"), f.get("message")) for f in obj.review_failures or []],
            "Nenhuma.",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Mission, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        mission = form.mission  # created by MissionAddForm.clean
        # The admin goes on with `obj` (log entry, redirect): make it the created row.
        obj.__dict__.update(Mission.objects.get(pk=mission.pk).__dict__)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting would list every item on the confirmation page; retention is a task.
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Mission) -> SafeString:
        # A class, not style="": the Content-Security-Policy refuses inline styles. The
        # colours are in templates/admin/base_site.html.
        return format_html(
            '<span class="mc-status mc-status-{}">{}</span>',
            obj.status.lower(),
            obj.get_status_display(),
        )

    @admin.display(description="progresso")
    def progress_display(self, obj: Mission) -> str:
        return f"{obj.progress:.0%} ({obj.done_items + obj.failed_items}/{obj.total_items})"

    @admin.display(description="contadores")
    def counters(self, obj: Mission) -> str:
        return (
            f"total {obj.total_items} · concluídos {obj.done_items} · falhos {obj.failed_items}"
            f" · pendentes {obj.pending_items} · registros {obj.records_delivered}"
        )

    @admin.display(description="itens por status")
    def item_counts(self, obj: Mission) -> SafeString:
        rows = dict(
            MissionItem.objects.filter(mission=obj)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        return _table(
            ["status", "itens"],
            [(label, rows.get(value, 0)) for value, label in ItemStatus.choices],
            "Sem itens.",
        )

    @admin.display(description="sessões")
    def sessions_table(self, obj: Mission) -> SafeString:
        total = BrowserSession.objects.filter(mission=obj).count()
        sessions = BrowserSession.objects.filter(mission=obj).select_related("worker")[
            :DETAIL_SESSIONS
        ]
        rows = [
            (
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:orchestrator_browsersession_change", args=[s.pk]),
                    s.session_key,
                ),
                s.get_status_display(),
                s.worker.name,
                s.proxy_external_id,
                s.attempt,
                s.items_done,
                s.items_failed,
                s.error_code,
            )
            for s in sessions
        ]
        table = _table(
            ["sessão", "status", "worker", "proxy", "tentativa", "ok", "falhas", "erro"],
            rows,
            "Nenhuma sessão.",
        )
        if total > DETAIL_SESSIONS:
            link = (
                reverse("admin:orchestrator_browsersession_changelist")
                + f"?mission__id__exact={obj.pk}"
            )
            return format_html(
                '{}<p>Mostrando {} de {}. <a href="{}">Ver todas</a></p>',
                table,
                DETAIL_SESSIONS,
                total,
                link,
            )
        return table

    @admin.display(description="eventos")
    def events_table(self, obj: Mission) -> SafeString:
        events = MissionEvent.objects.filter(mission=obj).order_by("-id")[:DETAIL_EVENTS]
        rows = [
            (
                timezone.localtime(e.created_at).strftime("%d/%m/%Y %H:%M:%S"),
                e.get_kind_display(),
                f"{e.from_status}→{e.to_status}" if e.to_status else "",
                e.attempt,
                e.error_code,
                e.message,
                e.actor,
            )
            for e in events
        ]
        return _table(
            ["quando", "tipo", "transição", "tentativa", "erro", "mensagem", "ator"],
            rows,
            "Nenhum evento.",
        )

    def _run(self, request: HttpRequest, queryset: QuerySet[Mission], fn: Any, verb: str) -> None:
        done = 0
        refused: list[str] = []
        for mission in queryset.order_by("pk"):
            try:
                fn(mission, actor=request.user.get_username())
                done += 1
            except actions.ActionError as exc:
                refused.append(f"#{mission.pk}: {exc.message}")
        if done:
            said = f"1 missão {verb[:-1]}" if done == 1 else f"{done} missões {verb}"
            self.message_user(request, f"{said}.", messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                f"{len(refused)} não puderam ser {verb}: " + "; ".join(refused[:10]),
                messages.WARNING,
            )

    @admin.action(description="Cancelar missões selecionadas")
    def cancel_missions(self, request: HttpRequest, queryset: QuerySet[Mission]) -> None:
        self._run(request, queryset, actions.cancel_mission, "canceladas")

    @admin.action(description="Reenfileirar missões selecionadas")
    def retry_missions(self, request: HttpRequest, queryset: QuerySet[Mission]) -> None:
        self._run(request, queryset, actions.retry_mission, "reenfileiradas")


@admin.register(MissionItem)
class MissionItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "mission", "url", "status", "attempts", "error_code", "finished_at"]
    list_filter = ["status"]
    search_fields = ["url", "=mission__id"]
    list_select_related = ["mission"]
    raw_id_fields = ["mission", "session"]
    show_full_result_count = False


@admin.register(BrowserSession)
class BrowserSessionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "session_key",
        "mission",
        "worker",
        "status",
        "proxy_external_id",
        "proxy_type",
        "proxy_country",
        "items_done",
        "items_failed",
        "last_activity_at",
    ]
    list_filter = ["status", "proxy_type", "provider"]
    search_fields = ["session_key", "remote_id", "proxy_external_id", "=mission__id"]
    list_select_related = ["mission", "worker"]
    # The proxy FK would render its credentials-bearing row; its external id suffices.
    exclude = ["proxy"]
    show_full_result_count = False


@admin.register(MissionEvent)
class MissionEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "mission",
        "kind",
        "from_status",
        "to_status",
        "error_code",
        "message",
    ]
    list_filter = ["kind"]
    search_fields = ["message", "error_code", "=mission__id"]
    list_select_related = ["mission"]
    show_full_result_count = False


@admin.register(OrchestratorInstance)
class OrchestratorInstanceAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "hostname",
        "pid",
        "event_bus",
        "started_at",
        "heartbeat_at",
        "stopped_at",
    ]
    search_fields = ["name", "hostname"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Clearing rows of dead processes is the one manual touch allowed.
        return super(ReadOnlyAdmin, self).has_delete_permission(request, obj)


class RecurringMissionForm(forms.ModelForm):
    overlap_policy = forms.ChoiceField(
        label="Sobreposição",
        choices=OverlapPolicy.choices,
        required=False,
        initial=OverlapPolicy.QUEUE,
        help_text="O que fazer quando a execução anterior ainda está ativa.",
    )
    urls_text = forms.CharField(
        label="URLs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 100}),
        help_text="Uma URL por linha. Sem URLs (com ETL configurado), cada execução retoma "
        "uma execução ETL: a última não concluída do domínio ou a informada abaixo.",
    )

    class Meta:
        model = RecurringMission
        fields = [
            "name",
            "cron",
            "timezone",
            "domain",
            "etl_run",
            "priority",
            "writer",
            "enabled",
            "overlap_policy",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["urls_text"].initial = "\n".join(self.instance.urls or [])

    def clean_overlap_policy(self) -> str:
        return self.cleaned_data.get("overlap_policy") or OverlapPolicy.QUEUE

    def clean_cron(self) -> str:
        return validate_cron(self.cleaned_data["cron"])

    def clean_timezone(self) -> str:
        return validate_timezone(self.cleaned_data["timezone"])

    def clean_urls_text(self) -> list[str]:
        lines = [line for line in self.cleaned_data["urls_text"].splitlines() if line.strip()]
        if not lines:
            return []
        try:
            return actions.clean_urls(lines).urls
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("urls", exc.messages)) from None

    def clean_domain(self) -> str:
        domain = (self.cleaned_data.get("domain") or "").strip()
        return normalize_domain(domain) if domain else ""

    def clean_etl_run(self) -> str:
        etl_run = (self.cleaned_data.get("etl_run") or "").strip()
        if etl_run and not re.fullmatch(etl_outbox.ETL_RUN_PATTERN, etl_run):
            raise ValidationError("Informe latest ou o id de uma execução ETL.")
        return etl_run

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "urls_text" in cleaned and not self.errors:
            errors = etl_outbox.template_errors(
                cleaned["urls_text"], cleaned.get("domain", ""), cleaned.get("etl_run", "")
            )
            for field, message in errors.items():
                self.add_error("urls_text" if field == "urls" else field, message)
        return cleaned

    def save(self, commit: bool = True) -> RecurringMission:
        obj: RecurringMission = super().save(commit=False)
        obj.urls = self.cleaned_data["urls_text"]
        obj.next_run_at = next_run(obj.cron, obj.timezone, timezone.now()) if obj.enabled else None
        if commit:
            obj.save()
        return obj


@admin.register(RecurringMission)
class RecurringMissionAdmin(admin.ModelAdmin):
    form = RecurringMissionForm
    list_display = [
        "name",
        "cron",
        "timezone",
        "enabled",
        "overlap_policy",
        "url_count",
        "last_run_at",
        "next_run_at",
    ]
    list_filter = ["enabled", "overlap_policy"]
    search_fields = ["name", "domain"]
    readonly_fields = ["last_run_at", "next_run_at", "created_at", "updated_at"]

    @admin.display(description="URLs")
    def url_count(self, obj: RecurringMission) -> int:
        return len(obj.urls or [])


# --- Recurring runs, webhooks, proxy x site health (features appended) ----------------


@admin.register(ScheduleRun)
class ScheduleRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "schedule", "due_at", "ran_at", "outcome", "policy", "missed", "mission"]
    list_filter = ["outcome", "policy"]
    search_fields = ["=schedule__id", "schedule__name", "message"]
    list_select_related = ["schedule", "mission"]
    show_full_result_count = False


class WebhookEndpointForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Chave HMAC-SHA256 (mín. 16 caracteres). Em branco mantém a atual.",
    )
    events = forms.CharField(
        help_text="Eventos separados por vírgula, ou prefixos com * (ex.: mission.*, *).",
    )
    url = forms.URLField(max_length=2048, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "secret", "events", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["events"] = ", ".join(self.instance.events or [])

    def clean_secret(self) -> str:
        value: str = self.cleaned_data.get("secret") or ""
        if not value:
            if not self.instance.pk or not self.instance.secret:
                raise ValidationError("Informe a chave do webhook.")
            return str(self.instance.secret)
        if len(value) < 16:
            raise ValidationError("Use ao menos 16 caracteres.")
        return value

    def clean_events(self) -> list[str]:
        from orchestrator.webhooks import EVENTS

        values = sorted({e.strip() for e in self.cleaned_data["events"].split(",") if e.strip()})
        bad = [
            e
            for e in values
            if e not in EVENTS
            and not (e.endswith("*") and any(k.startswith(e[:-1]) for k in EVENTS))
        ]
        if bad or not values:
            raise ValidationError(f"Eventos desconhecidos: {', '.join(bad) or '(nenhum)'}")
        return values


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["name", "url", "enabled", "event_list", "last_success_at", "last_failure_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "url"]
    readonly_fields = ["last_success_at", "last_failure_at", "last_error", "created_at"]
    actions = ["send_test"]

    @admin.display(description="Eventos")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events or [])

    @admin.action(description="Enviar entrega de teste")
    def send_test(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        from orchestrator import webhooks

        for endpoint in queryset:
            webhooks.send_test(endpoint)
        messages.success(request, f"{queryset.count()} entrega(s) de teste enfileirada(s).")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "endpoint",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    ]
    list_filter = ["status", "event", "endpoint"]
    search_fields = ["=id", "idempotency_key", "event"]
    list_select_related = ["endpoint"]
    show_full_result_count = False
    actions = ["replay_deliveries"]
    exclude = ["locked_by", "locked_until", "lease_token"]
    readonly_fields = ["attempt_table"]

    @admin.display(description="Tentativas")
    def attempt_table(self, obj: WebhookDelivery) -> SafeString:
        rows = [
            (
                a.number,
                a.started_at,
                a.status_code,
                f"{a.duration_ms} ms",
                "sim" if a.ok else "não",
                "sim" if a.replay else "",
                a.error or a.response_body[:200],
            )
            for a in obj.attempt_log.all()
        ]
        return _table(
            ["#", "Início", "HTTP", "Duração", "OK", "Replay", "Erro / resposta"],
            rows,
            "Nenhuma tentativa ainda.",
        )

    @admin.action(description="Reenviar (replay) as entregas selecionadas")
    def replay_deliveries(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        from orchestrator import webhooks

        n = 0
        for delivery in queryset:
            webhooks.replay(delivery)
            n += 1
        messages.success(request, f"{n} entrega(s) reenfileirada(s).")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_actions(self, request: HttpRequest) -> Any:
        # ReadOnlyAdmin denies change permission; replay is an explicit operator action.
        acts = super().get_actions(request)
        if "replay_deliveries" not in acts:
            acts["replay_deliveries"] = self.get_action("replay_deliveries")
        return acts


@admin.register(ProxyDomainHealth)
class ProxyDomainHealthAdmin(ReadOnlyAdmin):
    list_display = [
        "proxy_external_id",
        "domain",
        "score",
        "successes",
        "failures",
        "blocked_until",
        "blocked_reason",
        "updated_at",
    ]
    list_filter = ["domain"]
    search_fields = ["domain", "proxy__external_id"]
    list_select_related = ["proxy"]
    exclude = ["proxy"]
    actions = ["unblock"]

    @admin.display(description="Proxy", ordering="proxy__external_id")
    def proxy_external_id(self, obj: ProxyDomainHealth) -> str:
        return obj.proxy.external_id

    @admin.action(description="Desbloquear para o site (zera a pontuação)")
    def unblock(self, request: HttpRequest, queryset: QuerySet[ProxyDomainHealth]) -> None:
        n = queryset.update(score=0, blocked_until=None, blocked_reason="")
        messages.success(request, f"{n} par(es) proxy x site desbloqueado(s).")

    def get_actions(self, request: HttpRequest) -> Any:
        acts = super().get_actions(request)
        if "unblock" not in acts:
            acts["unblock"] = self.get_action("unblock")
        return acts


@admin.register(DomainBreaker)
class DomainBreakerAdmin(ReadOnlyAdmin):
    list_display = ["domain", "state", "paused_until", "reason", "results", "blocked", "trips"]
    list_filter = ["state"]
    search_fields = ["domain"]
    actions = ["resume_domains"]

    @admin.action(description="Retomar os sites selecionados agora")
    def resume_domains(self, request: HttpRequest, queryset: QuerySet[DomainBreaker]) -> None:
        from orchestrator import site_breaker

        actor = getattr(request.user, "username", "") or "admin"
        n = sum(1 for row in queryset if site_breaker.resume(row.domain, actor=actor))
        messages.success(request, f"{n} site(s) retomado(s).")

    def get_actions(self, request: HttpRequest) -> Any:
        acts = super().get_actions(request)
        if "resume_domains" not in acts:
            acts["resume_domains"] = self.get_action("resume_domains")
        return acts
