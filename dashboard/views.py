"""The pt-BR operator dashboard: thin views over orchestrator.actions, registry.config
and dashboard.queries. Live parts are partials answered with an ETag, polled by static/js/app.js."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError, models
from django.db.models import ProtectedError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.log import record_updates
from dashboard import adapters, queries, settings_catalog, texts
from dashboard.forms import (
    MissionForm,
    ProxyForm,
    ProxyImportForm,
    SiteConfigForm,
    UploaderForm,
    WorkerForm,
    WriterForm,
    add_domain_errors,
    to_pt,
)
from mission_control.permissions import ADMIN, OPERATOR, VIEWER, has_role
from mission_control.records import RecordsUnavailable, external_records
from orchestrator import (
    actions,
    domain_slots,
    etl_outbox,
    explain,
    proxy_health,
    records,
    site_breaker,
    webhooks,
)
from orchestrator.models import (
    DomainBreaker,
    ItemEvidence,
    Mission,
    MissionItem,
    RecurringMission,
    ScheduleRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from orchestrator.states import CANCELLABLE, RETRYABLE_BY_OPERATOR, ItemStatus, MissionStatus
from registry import config
from registry.models import ConfigEntry, Proxy, SiteConfig, Uploader, Worker, Writer

View = Callable[..., HttpResponse]


# --- access ---------------------------------------------------------------------------


def role_required(role: str) -> Callable[[View], View]:
    """Login required (anonymous → /login/), then `role` required (else 403)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, role):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorate


def page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    ctx = {
        "can_operate": has_role(request.user, OPERATOR),
        "can_admin": has_role(request.user, ADMIN),
        **(context or {}),
    }
    return render(request, template, ctx, status=status)


def live(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """Render a polled partial; answer 304 when the client already has this content."""
    response = page(request, template, context)
    etag = '"' + hashlib.md5(response.content, usedforsecurity=False).hexdigest() + '"'
    if etag in request.headers.get("If-None-Match", ""):
        not_modified = HttpResponseNotModified()
        not_modified["ETag"] = etag
        return not_modified
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    return response


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


# app.js stops polling an element whose request is answered with this status.
STOP_POLLING = 286

ACTION_ERRORS = {
    "invalid_state": "A missão #{id} está em “{state}” e não permite esta ação.",
    "conflict": "A missão #{id} mudou de estado enquanto isso; tente novamente.",
}


def _action_error(mission: Mission, exc: actions.ActionError) -> str:
    template = ACTION_ERRORS.get(exc.code, "Não foi possível concluir a ação na missão #{id}.")
    return template.format(id=mission.pk, state=MissionStatus(mission.status).label)


def _usable_capacity(capacity: dict[str, Any]) -> dict[str, Any]:
    """Sessions in use of workers that can take them: an offline worker's slots are
    listed apart, never counted as capacity (the allocator skips offline workers)."""
    workers = capacity.get("workers", [])
    up = [w for w in workers if w.get("health_status") != "offline"]
    return {
        **capacity,
        "used": sum(w["active_sessions"] for w in up),
        "total": sum(w["max_sessions"] for w in up),
        "offline_slots": sum(w["max_sessions"] for w in workers if w not in up),
    }


# --- Visão geral ----------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def overview(request: HttpRequest) -> HttpResponse:
    return page(
        request,
        "dashboard/overview.html",
        {"o": queries.overview(timezone.now()), "polling": True},
    )


@require_GET
@role_required(VIEWER)
def overview_live(request: HttpRequest) -> HttpResponse:
    return live(
        request, "dashboard/partials/overview_live.html", {"o": queries.overview(timezone.now())}
    )


# --- Missões --------------------------------------------------------------------------


def _missions_context(request: HttpRequest) -> dict[str, Any]:
    filters = queries.MissionFilters.from_query(request.GET)
    page_obj = queries.missions_page(filters, request.GET, timezone.now())
    explain.annotate_waiting(page_obj.rows)  # "why is this waiting?" tooltips
    return {
        "filters": filters,
        "page_obj": page_obj,
        "statuses": MissionStatus.choices,
        "periods": [(k, v[0]) for k, v in queries.PERIODS.items()],
        "query": request.GET.urlencode(),
    }


@require_GET
@role_required(VIEWER)
def missions(request: HttpRequest) -> HttpResponse:
    return page(request, "dashboard/missions.html", {**_missions_context(request), "polling": True})


@require_GET
@role_required(VIEWER)
def missions_rows(request: HttpRequest) -> HttpResponse:
    return live(request, "dashboard/partials/missions_rows.html", _missions_context(request))


def _back_to_missions(request: HttpRequest) -> HttpResponse:
    query = QueryDict(request.POST.get("query", ""))
    allowed = {
        k: v
        for k, v in query.items()
        if k in ("status", "domain", "period", "q", "revisao", "before", "after")
    }
    url = reverse("dashboard:missions")
    return redirect(f"{url}?{urlencode(allowed)}" if allowed else url)


@require_POST
@role_required(OPERATOR)
def missions_bulk(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action")
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()][:500]
    if action not in ("cancel", "retry") or not ids:
        messages.error(request, "Selecione ao menos uma missão e uma ação.")
        return _back_to_missions(request)
    fn = actions.cancel_mission if action == "cancel" else actions.retry_mission
    done, skipped = 0, 0
    for mission in Mission.objects.filter(pk__in=ids).order_by("pk"):
        try:
            fn(mission, actor=_actor(request))
            done += 1
        except actions.ActionError:
            skipped += 1
    one, many = (
        ("cancelada", "canceladas") if action == "cancel" else ("reenfileirada", "reenfileiradas")
    )
    text = f"{texts.plural(done, 'missão', 'missões')} {one if done == 1 else many}."
    if skipped:
        state = "estava" if skipped == 1 else "estavam"
        text += (
            f" {texts.plural(skipped, 'ignorada', 'ignoradas')}: {state} em um estado que não"
            " permite a ação."
        )
    (messages.success if done else messages.warning)(request, text)
    return _back_to_missions(request)


@role_required(OPERATOR)
def mission_new(request: HttpRequest) -> HttpResponse:
    form = MissionForm(request.POST or None, request.FILES or None)
    if settings.LOCALNODE_ENABLED:
        # The built-in worker scrapes the bundled demo catalogue: suggest URLs that work.
        demo = request.build_absolute_uri("/local/demo/p/")
        form.fields["urls"].widget.attrs["placeholder"] = f"{demo}1/\n{demo}2/\n{demo}3/"
        form.fields[
            "urls"
        ].help_text = f"Uma URL por linha. Catálogo de demonstração local: {demo}1/ até {demo}300/."
    if request.method == "POST" and form.is_valid():
        try:
            urls = form.url_list()
            mission = actions.create_mission(
                name=form.cleaned_data["name"],
                urls=urls,
                domain="" if urls else form.cleaned_data.get("etl_domain") or "",
                etl_run=form.cleaned_data.get("etl_run") or None,
                priority=form.cleaned_data["priority"],
                writer=form.cleaned_data["writer"],
                user=request.user,
            )
        except ValidationError as exc:
            add_domain_errors(form, exc, default_field="urls")
        except etl_outbox.EtlRefused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                f"Missão #{mission.pk} criada com {mission.total_items} URLs e enfileirada.",
            )
            return redirect("dashboard:mission_detail", pk=mission.pk)
    return page(request, "dashboard/mission_new.html", {"form": form})


def _mission_live_context(mission: Mission) -> dict[str, Any]:
    steps = []
    order = [
        MissionStatus.QUEUED,
        MissionStatus.ATRIBUIDO,
        MissionStatus.EXTRAINDO,
        MissionStatus.ARMAZENANDO,
        MissionStatus.FINALIZADO,
    ]
    stamps = [
        mission.created_at,
        mission.atribuido_at,
        mission.extraindo_at,
        mission.armazenando_at,
        mission.finalizado_at,
    ]
    current = order.index(mission.status) if mission.status in order else -1  # type: ignore[arg-type]
    reached = [i for i, at in enumerate(stamps) if at is not None]
    # ERRO: the last step reached is where it failed; it is marked failed, not done.
    failed_at = reached[-1] if mission.status == MissionStatus.ERRO and reached else -1
    for i, (state, at) in enumerate(zip(order, stamps, strict=True)):
        steps.append(
            {
                "label": state.label,
                "at": at,
                "failed": i == failed_at,
                # Ended in ERRO/CANCELADO (current == -1): every stamped step was reached.
                "done": at is not None
                and i != failed_at
                and (current == -1 or i < current or mission.status == MissionStatus.FINALIZADO),
                "current": i == current and mission.status != MissionStatus.FINALIZADO,
            }
        )
    return {
        "mission": mission,
        "steps": steps,
        "sessions": queries.mission_sessions(mission),
        "explanation": None if mission.is_terminal else explain.explain_mission(mission),
        "can_cancel": mission.status in CANCELLABLE,
        "can_retry": mission.status in RETRYABLE_BY_OPERATOR,
        "etl": etl_outbox.panel(mission),
    }


def _get_mission(pk: int) -> Mission:
    return get_object_or_404(Mission.objects.select_related("writer"), pk=pk)


@require_GET
@role_required(VIEWER)
def mission_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return page(request, "dashboard/mission_detail.html", _mission_page_context(request, pk))


@require_GET
@role_required(VIEWER)
def item_detail(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """One item: its extracted record and its last failure evidence."""
    mission = _get_mission(pk)
    item = get_object_or_404(MissionItem, mission=mission, pk=item_pk)
    record, elsewhere, unavailable = None, "", ""
    try:
        record = records.item_record(mission.pk, item.pk)
    except records.RecordsElsewhere as exc:
        elsewhere = exc.writer_name
    except RecordsUnavailable as exc:
        unavailable = str(exc)
    evidence = ItemEvidence.objects.filter(item=item).first()
    ctx = {
        "mission": mission,
        "item": item,
        "record": record,
        "record_json": json.dumps(record, ensure_ascii=False, indent=2),
        "records_elsewhere": elsewhere,
        "records_unavailable": unavailable,
        "evidence": evidence,
        "screenshot_url": (
            f"/api/missions/{mission.pk}/items/{item.pk}/screenshot/"
            if evidence and evidence.screenshot_file
            else ""
        ),
    }
    return page(request, "dashboard/item_detail.html", ctx)


PREVIEW_TTL_S = 30


def _record_previews(mission: Mission, rows: list[MissionItem]) -> str:
    """Set `record_preview` (a short text of the extracted record) on the done items
    of the page; returns the external writer's name when it holds the records without
    read-back (the table says so once). An external writer's answer is cached briefly:
    the live page polls."""
    wanted = [it.pk for it in rows if it.status == ItemStatus.DONE]
    for it in rows:
        it.record_preview = ""  # type: ignore[attr-defined]
    if not wanted:
        return ""
    external = mission.writer is not None and not records.is_builtin(mission.writer)
    key = f"record-previews:{mission.pk}:" + hashlib.sha256(str(wanted).encode()).hexdigest()
    found = cache.get(key) if external else None
    if found is None:
        try:
            found = records.item_records(mission.pk, wanted)
        except records.RecordsElsewhere as exc:
            return exc.writer_name
        except RecordsUnavailable:
            found = {}
        if external:
            cache.set(key, found, PREVIEW_TTL_S)
    for it in rows:
        it.record_preview = _preview_text(found.get(str(it.pk)))  # type: ignore[attr-defined]
    return ""


def _preview_text(record: Any) -> str:
    if not isinstance(record, dict) or not record:
        return ""
    for field in ("title", "name", "price"):
        if isinstance(record.get(field), str | int | float) and record[field] != "":
            return str(record[field])[:120]
    return json.dumps(record, ensure_ascii=False)[:120]


@require_GET
@role_required(VIEWER)
def mission_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The whole mission page body. Once the mission has ended, answer 286: app.js swaps
    this last state in and stops polling."""
    ctx = _mission_page_context(request, pk)
    response = live(request, "dashboard/partials/mission_live.html", ctx)
    if not ctx["polling"] and response.status_code == 200:
        response.status_code = STOP_POLLING
    return response


def _mission_page_context(request: HttpRequest, pk: int) -> dict[str, Any]:
    mission = _get_mission(pk)
    item_status = request.GET.get("items", "")
    item_status = item_status if item_status in ItemStatus.values else ""
    ctx = _mission_live_context(mission)
    items = queries.mission_items(mission, item_status, request.GET)
    ctx.update(
        items=items,
        records_elsewhere=_record_previews(mission, items.rows),
        events=queries.mission_events(mission, request.GET),
        item_status=item_status,
        item_statuses=ItemStatus.choices,
        polling=not mission.is_terminal,
        records_where=_records_where(mission),
        export_jsonl=f"/api/missions/{mission.pk}/records/?format=jsonl",
        export_csv=f"/api/missions/{mission.pk}/records/?format=csv",
    )
    return ctx


def _records_where(mission: Mission) -> str:
    """Where the mission page finds the records: "here" when export can stream them (the
    built-in writer stored them, or an external writer gives them back through
    read-back); "silent" when the external writer did not answer (asked again shortly);
    "writer" when it keeps them (the page says so)."""
    try:
        model = apps.get_model("localnode", "LocalRecord")
    except LookupError:
        return "writer"
    if model.objects.filter(mission_id=mission.pk).exists():
        return "here"
    external = external_records(mission.pk)
    if external is None or external.stream is None:
        return "writer"
    return "here" if external.answering else "silent"


@require_POST
@role_required(OPERATOR)
def mission_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    mission = _get_mission(pk)
    try:
        actions.cancel_mission(mission, actor=_actor(request))
    except actions.ActionError as exc:
        messages.error(request, _action_error(mission, exc))
    else:
        messages.success(request, f"Missão #{mission.pk} cancelada.")
    return redirect("dashboard:mission_detail", pk=mission.pk)


@require_POST
@role_required(OPERATOR)
def mission_retry(request: HttpRequest, pk: int) -> HttpResponse:
    mission = _get_mission(pk)
    try:
        actions.retry_mission(mission, actor=_actor(request))
    except actions.ActionError as exc:
        messages.error(request, _action_error(mission, exc))
    else:
        messages.success(request, f"Missão #{mission.pk} voltou para a fila.")
    return redirect("dashboard:mission_detail", pk=mission.pk)


# --- Execução -------------------------------------------------------------------------

MANAGER_LABELS = {"sessions": "Sessões", "workers": "Workers", "missions": "Missões"}


def _execution_context() -> dict[str, Any]:
    now = timezone.now()
    status = adapters.orchestrator_status(now)
    queue = status.get("queue") or {}
    instances = [
        {
            **inst,
            "managers": [
                {"name": name, "label": MANAGER_LABELS.get(name, name), **stats}
                for name, stats in sorted(inst.get("managers", {}).items())
            ],
        }
        for inst in status.get("instances", [])
    ]
    capacity = _usable_capacity(status.get("capacity") or {})
    return {
        "status": status,
        "instances": instances,
        "capacity": capacity,
        "paused": bool(status.get("paused")),
        "queue": [(s.value, s.label, queue.get(s.value, 0)) for s in MissionStatus],
        "sessions": queries.live_sessions(),
        "proxy_health": proxy_health.overview(now),
        "site_breakers": list(
            DomainBreaker.objects.exclude(state=DomainBreaker.State.CLOSED).order_by("domain")[:50]
        ),
        "domain_load": domain_slots.overview(),
        "now": now,
    }


@require_GET
@role_required(VIEWER)
def execution(request: HttpRequest) -> HttpResponse:
    return page(request, "dashboard/execution.html", {**_execution_context(), "polling": True})


@require_GET
@role_required(VIEWER)
def execution_live(request: HttpRequest) -> HttpResponse:
    return live(request, "dashboard/partials/execution_live.html", _execution_context())


@require_POST
@role_required(OPERATOR)
def execution_pause(request: HttpRequest) -> HttpResponse:
    paused = actions.set_paused(request.POST.get("paused") == "1")
    messages.success(
        request,
        "Orquestrador pausado: nenhum trabalho novo será assumido."
        if paused
        else "Orquestrador retomado.",
    )
    return redirect("dashboard:execution")


# --- Recursos -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    slug: str
    model: type[models.Model]
    form: type[forms.ModelForm]
    label: str
    singular: str
    secret: str


KINDS: dict[str, Kind] = {
    "workers": Kind("workers", Worker, WorkerForm, "Workers", "worker", "api_key"),
    "writers": Kind("writers", Writer, WriterForm, "Writers", "writer", "api_key"),
    "uploaders": Kind("uploaders", Uploader, UploaderForm, "Uploaders", "uploader", "api_key"),
    "proxies": Kind("proxies", Proxy, ProxyForm, "Proxies", "proxy", "password"),
}


def _kind(slug: str) -> Kind:
    kind = KINDS.get(slug)
    if kind is None:
        from django.http import Http404

        raise Http404
    return kind


@require_GET
@role_required(VIEWER)
def resources(request: HttpRequest, kind: str = "workers") -> HttpResponse:
    k = _kind(kind)
    qs = k.model._default_manager.all()
    paginator = Paginator(qs, 100)
    return page(
        request,
        "dashboard/resources.html",
        {
            "kind": k,
            "kinds": KINDS.values(),
            "page_obj": paginator.get_page(request.GET.get("page")),
            "import_form": ProxyImportForm() if k.slug == "proxies" else None,
        },
    )


@role_required(ADMIN)
def resource_form(request: HttpRequest, kind: str, pk: int | None = None) -> HttpResponse:
    k = _kind(kind)
    instance = get_object_or_404(k.model, pk=pk) if pk else None
    form = k.form(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        try:
            obj = form.save()
        except IntegrityError:
            form.add_error(None, "Já existe um registro com esses dados.")
        else:
            messages.success(request, f"{k.singular.capitalize()} “{obj}” salvo.")
            return redirect("dashboard:resources", kind=k.slug)
    return page(
        request,
        "dashboard/resource_form.html",
        {
            "kind": k,
            "form": form,
            "object": instance,
            "has_secret": bool(instance and getattr(instance, k.secret)),
        },
    )


def _delete(request: HttpRequest, queryset: models.QuerySet[Any]) -> int:
    try:
        deleted, _ = queryset.delete()
    except ProtectedError:
        messages.error(request, "Não é possível excluir: há sessões ligadas a este registro.")
        return 0
    return deleted


@require_POST
@role_required(ADMIN)
def resource_delete(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    k = _kind(kind)
    obj = get_object_or_404(k.model, pk=pk)
    if _delete(request, k.model._default_manager.filter(pk=obj.pk)):
        messages.success(request, f"{k.singular.capitalize()} “{obj}” excluído.")
    return redirect("dashboard:resources", kind=k.slug)


@require_POST
@role_required(ADMIN)
def resource_toggle(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    k = _kind(kind)
    obj = get_object_or_404(k.model, pk=pk)
    enabled = not obj.enabled  # type: ignore[attr-defined]
    rows = k.model._default_manager.filter(pk=obj.pk)
    record_updates(rows, ["enabled"])
    rows.update(enabled=enabled, updated_at=timezone.now())
    messages.success(request, f"“{obj}” {'ativado' if enabled else 'desativado'}.")
    return redirect("dashboard:resources", kind=k.slug)


@require_POST
@role_required(ADMIN)
def resource_test(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    k = _kind(kind)
    obj = get_object_or_404(k.model, pk=pk)
    result = adapters.test_connection(obj)
    return page(
        request, "dashboard/partials/connection_result.html", {"result": result, "object": obj}
    )


@require_POST
@role_required(ADMIN)
def resource_bulk(request: HttpRequest, kind: str) -> HttpResponse:
    k = _kind(kind)
    action = request.POST.get("action")
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()][:1000]
    qs = k.model._default_manager.filter(pk__in=ids)
    if action not in ("enable", "disable", "delete") or not ids:
        messages.error(request, "Selecione ao menos um registro e uma ação.")
    elif action == "delete":
        n = _delete(request, qs)
        if n:
            messages.success(request, f"{n} registro(s) excluído(s).")
    else:
        record_updates(qs, ["enabled"])
        n = qs.update(enabled=action == "enable", updated_at=timezone.now())
        messages.success(
            request, f"{n} registro(s) {'ativado(s)' if action == 'enable' else 'desativado(s)'}."
        )
    return redirect("dashboard:resources", kind=k.slug)


@require_POST
@role_required(ADMIN)
def proxies_import(request: HttpRequest) -> HttpResponse:
    form = ProxyImportForm(request.POST, request.FILES)
    if form.is_valid():
        f = form.cleaned_data["file"]
        try:
            result = adapters.import_proxies(f.name, f.open("rb"))
        except ValidationError as exc:
            for msg in exc.messages[:10]:
                messages.error(request, to_pt(msg))
        else:
            messages.success(
                request,
                f"Importação concluída: {result.created} criado(s), {result.updated} atualizado(s).",
            )
    else:
        for text in form.errors.get("file", []):
            messages.error(request, str(text))
    return redirect("dashboard:resources", kind="proxies")


# --- Estratégias ----------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def strategies(request: HttpRequest) -> HttpResponse:
    return page(request, "dashboard/strategies.html", {"configs": SiteConfig.objects.all()[:500]})


@role_required(ADMIN)
def strategy_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    instance = get_object_or_404(SiteConfig, pk=pk) if pk else None
    form = SiteConfigForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        try:
            obj = form.save()
        except IntegrityError:
            form.add_error("domain", "Já existe uma estratégia para este domínio.")
        else:
            messages.success(request, f"Estratégia “{obj.domain}” salva.")
            return redirect("dashboard:strategies")
    return page(request, "dashboard/strategy_form.html", {"form": form, "object": instance})


@require_POST
@role_required(ADMIN)
def strategy_delete(request: HttpRequest, pk: int) -> HttpResponse:
    obj = get_object_or_404(SiteConfig, pk=pk)
    obj.delete()
    messages.success(request, f"Estratégia “{obj.domain}” excluída.")
    return redirect("dashboard:strategies")


# --- Configurações --------------------------------------------------------------------


# The keys' descriptions in Portuguese (registry.config keeps them in English).


def _settings_context(
    errors: dict[str, str] | None = None, posted: dict[str, str] | None = None
) -> dict[str, Any]:
    current = config.load()
    overridden = set(ConfigEntry.objects.values_list("key", flat=True))

    def row(key: str) -> dict[str, Any]:
        spec = config.KEYS[key]
        return {
            "key": spec,
            "description": settings_catalog.DESCRIPTIONS.get(key, spec.description),
            "unit": settings_catalog.unit(key),
            "value": (posted or {}).get(key, current[key]),
            "overridden": key in overridden,
            "error": (errors or {}).get(key, ""),
        }

    groups = [
        {"title": title, "desc": desc, "rows": [row(k) for k in keys]}
        for title, desc, keys in settings_catalog.groups()
    ]
    return {"groups": groups}


@require_GET
@role_required(VIEWER)
def settings_page(request: HttpRequest) -> HttpResponse:
    return page(request, "dashboard/settings.html", _settings_context())


@require_POST
@role_required(ADMIN)
def setting_group_save(request: HttpRequest, index: int) -> HttpResponse:
    """One Salvar per group: every value of the group is validated, then all the changed
    ones are stored together or none (errors shown beside each field)."""
    try:
        title, keys = settings_catalog.group_keys(index)
    except IndexError:
        raise Http404 from None
    result = settings_catalog.save_group(keys, request.POST)
    if result.errors:
        n = len(result.errors)
        ctx = _settings_context(result.errors, result.posted)
        ctx["failed_group"] = index
        ctx["failed_summary"] = (
            f"{title}: nada foi salvo; corrija {texts.plural(n, 'campo', 'campos')}."
        )
        return page(request, "dashboard/settings.html", ctx, status=400)
    n = len(result.changed)
    if n:
        messages.success(request, f"{title}: {texts.plural(n, 'valor salvo', 'valores salvos')}.")
    else:
        messages.info(request, f"{title}: nenhum valor mudou.")
    return redirect(reverse("dashboard:settings") + f"#grupo-{index}")


@require_POST
@role_required(ADMIN)
def setting_reset(request: HttpRequest, key: str) -> HttpResponse:
    if key not in config.KEYS:
        from django.http import Http404

        raise Http404
    config.reset(key)
    messages.success(request, f"Configuração “{key}” voltou ao padrão.")
    return redirect("dashboard:settings")


# --- Disjuntor por site (orchestrator/site_breaker.py) -----------------------------


@require_POST
@role_required(OPERATOR)
def domain_resume(request: HttpRequest, domain: str) -> HttpResponse:
    if site_breaker.resume(domain, actor=_actor(request)) is None:
        raise Http404("domínio sem disjuntor")
    messages.success(request, f"Site {domain} retomado: novas sessões liberadas.")
    return redirect("dashboard:execution")


# --- Webhooks (orchestrator/webhooks.py) --------------------------------------------


def _mask_url(url: str) -> str:
    """The endpoint URL without credentials or query string (they may carry tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "•••"
    host = f"[{host}]" if ":" in host else host
    netloc = (f"***@{host}" if parts.username or parts.password else host) + (
        f":{port}" if port else ""
    )
    return urlunsplit((parts.scheme, netloc, parts.path, "•••" if parts.query else "", ""))


@require_GET
@role_required(VIEWER)
def webhooks_page(request: HttpRequest) -> HttpResponse:
    endpoints = [
        {
            "pk": e.pk,
            "name": e.name,
            "url": _mask_url(e.url),
            "events": e.events or [],
            "enabled": e.enabled,
            "last_success_at": e.last_success_at,
            "last_failure_at": e.last_failure_at,
        }
        for e in WebhookEndpoint.objects.only(
            "id", "name", "url", "events", "enabled", "last_success_at", "last_failure_at"
        )
    ]
    deliveries = list(
        WebhookDelivery.objects.select_related("endpoint")
        .only(
            "id",
            "event",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "replay_requested",
            "endpoint__id",
            "endpoint__name",
        )
        .order_by("-id")[:50]
    )
    return page(
        request, "dashboard/webhooks.html", {"endpoints": endpoints, "deliveries": deliveries}
    )


@require_POST
@role_required(OPERATOR)
def webhook_replay(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = get_object_or_404(WebhookDelivery, pk=pk)
    webhooks.replay(delivery)  # the same call as POST /api/webhook-deliveries/<id>/replay/
    messages.success(request, f"Entrega #{delivery.pk} será reenviada na próxima execução.")
    return redirect("dashboard:webhooks")


# --- Missões recorrentes (orchestrator/schedules.py) --------------------------------


@require_GET
@role_required(VIEWER)
def recurring(request: HttpRequest) -> HttpResponse:
    schedules = list(
        RecurringMission.objects.only(
            "id",
            "name",
            "cron",
            "timezone",
            "overlap_policy",
            "next_run_at",
            "last_run_at",
            "enabled",
        )[:500]
    )
    runs = list(
        ScheduleRun.objects.select_related("schedule", "mission")
        .only(
            "id",
            "due_at",
            "ran_at",
            "outcome",
            "missed",
            "message",
            "schedule__id",
            "schedule__name",
            "mission__id",
        )
        .order_by("-id")[:50]
    )
    return page(request, "dashboard/recurring.html", {"schedules": schedules, "runs": runs})


WEBHOOK_FIELD_ERRORS = {
    "min_length": "Use pelo menos 16 caracteres.",
    "required": "Campo obrigatório.",
    "blank": "Campo obrigatório.",
    "invalid": "Valor inválido.",
    "unique": "Já existe um webhook com este nome.",
}


def _serializer_errors_pt(errors: dict[str, Any]) -> dict[str, str]:
    out = {}
    for field, problems in errors.items():
        first = problems[0] if isinstance(problems, list) and problems else problems
        code = getattr(first, "code", "")
        name = "non_field" if field == "non_field_errors" else field
        out[name] = WEBHOOK_FIELD_ERRORS.get(code) or to_pt(str(first))
    return out


@role_required(ADMIN)
def webhook_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create or edit a webhook endpoint (admin, as in the API); validated by the API's
    serializer, errors shown in pt-BR."""
    from orchestrator.serializers import WebhookEndpointSerializer

    endpoint = get_object_or_404(WebhookEndpoint, pk=pk) if pk else None
    values: dict[str, Any] = {
        "name": endpoint.name if endpoint else "",
        "url": endpoint.url if endpoint else "",
        "events": endpoint.events if endpoint else [],
        "enabled": endpoint.enabled if endpoint else True,
    }
    errors: dict[str, str] = {}
    if request.method == "POST":
        data: dict[str, Any] = {
            "name": request.POST.get("name", "").strip(),
            "url": request.POST.get("url", "").strip(),
            "events": request.POST.getlist("events"),
            "enabled": request.POST.get("enabled") == "on",
        }
        if request.POST.get("secret") or endpoint is None:
            data["secret"] = request.POST.get("secret", "")
        serializer = WebhookEndpointSerializer(endpoint, data=data, partial=endpoint is not None)
        if serializer.is_valid():
            saved = serializer.save()
            messages.success(request, f"Webhook “{saved.name}” salvo.")
            return redirect("dashboard:webhooks")
        values = data
        errors = _serializer_errors_pt(serializer.errors)
        if "events" in errors and not data["events"]:
            errors["events"] = "Escolha pelo menos um evento."
    ctx = {
        "endpoint": endpoint,
        "title": "Editar webhook" if endpoint else "Novo webhook",
        "values": values,
        "errors": errors,
        "events": sorted(webhooks.EVENTS.items()),
    }
    return page(request, "dashboard/webhook_form.html", ctx, status=400 if errors else 200)


@role_required(OPERATOR)
def recurring_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create or edit a recurring mission (operator, as in the API); validated by the
    API's serializer, errors shown in pt-BR."""
    from orchestrator.serializers import RecurringMissionSerializer

    schedule = get_object_or_404(RecurringMission, pk=pk) if pk else None
    values: dict[str, Any] = {
        "name": schedule.name if schedule else "",
        "cron": schedule.cron if schedule else "0 6 * * *",
        "timezone": schedule.timezone if schedule else "America/Sao_Paulo",
        "urls": "\n".join(schedule.urls) if schedule else "",
        "domain": schedule.domain if schedule else "",
        "etl_run": schedule.etl_run if schedule else "",
        "priority": schedule.priority if schedule else 0,
        "overlap_policy": schedule.overlap_policy if schedule else "skip",
        "writer": schedule.writer_id if schedule and schedule.writer_id else "",
    }
    enabled = schedule.enabled if schedule else True
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {k: request.POST.get(k, "").strip() for k in values}
        enabled = request.POST.get("enabled") == "on"
        data = {
            **values,
            "urls": [u.strip() for u in values["urls"].splitlines() if u.strip()],
            "writer": values["writer"] or None,
            # The API's serializer wants a JSON integer; a form sends text.
            "priority": int(values["priority"])
            if re.fullmatch(r"-?\d{1,9}", values["priority"])
            else values["priority"] or 0,
            "enabled": enabled,
        }
        serializer = RecurringMissionSerializer(schedule, data=data)
        try:
            valid = serializer.is_valid()
        except etl_outbox.EtlRefused as exc:  # no ETL to resume from: the API's 409
            valid, errors = False, {"urls": exc.message}
        if valid:
            saved = serializer.save()
            messages.success(request, f"Missão recorrente “{saved.name}” salva.")
            return redirect("dashboard:recurring")
        errors = errors or _serializer_errors_pt(serializer.errors)
    return page(
        request,
        "dashboard/recurring_form.html",
        {
            "schedule": schedule,
            "title": "Editar missão recorrente" if schedule else "Nova missão recorrente",
            "fields": _recurring_fields(values, errors),
            "enabled": enabled,
            "errors": errors,
        },
        status=400 if errors else 200,
    )


def _recurring_fields(values: dict[str, Any], errors: dict[str, str]) -> list[dict[str, Any]]:
    from orchestrator.models import OverlapPolicy

    writers = [("", "Writer padrão")] + [
        (w.pk, w.name) for w in Writer.objects.filter(enabled=True).only("id", "name")
    ]
    spec = [
        ("name", "Nome", "", False, False, None),
        ("cron", "Cron", texts.cron_text(str(values["cron"])), True, False, None),
        ("timezone", "Fuso horário", "Ex.: America/Sao_Paulo", True, False, None),
        ("priority", "Prioridade", "Maior sai antes da fila.", True, False, None),
        (
            "overlap_policy",
            "Se a anterior ainda estiver ativa",
            "",
            False,
            False,
            OverlapPolicy.choices,
        ),
        ("writer", "Writer", "", False, False, writers),
        ("urls", "URLs (uma por linha)", "", True, True, None),
        (
            "domain",
            "Domínio",
            "Sem URLs: cada execução retoma a última execução ETL não concluída do domínio.",
            True,
            False,
            None,
        ),
        (
            "etl_run",
            "Execução ETL a retomar",
            "Sem URLs: latest (a última do domínio) ou o id de uma execução.",
            True,
            False,
            None,
        ),
    ]
    return [
        {
            "name": name,
            "label": label,
            "help": help_text,
            "mono": mono,
            "wide": wide,
            "choices": choices,
            "value": values.get(name, ""),
            "error": errors.get(name, ""),
        }
        for name, label, help_text, mono, wide, choices in spec
    ]
