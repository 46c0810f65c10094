"""REST API of the orchestrator: missions, sessions, recurring missions and execution
control. Viewsets stay thin: serializers validate, `orchestrator.actions` changes state."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import FileResponse
from django.utils import timezone
from django_filters.constants import EMPTY_VALUES
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import filters, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mission_control import evidence_files, strict_json
from mission_control.api import Conflict
from mission_control.filters import (
    FilterBackend,
    StrictBooleanFilter,
    StrictDateTimeField,
    StrictFilterSet,
    strict_bool,
)
from mission_control.pagination import CursorPagination
from mission_control.permissions import OPERATOR, VIEWER
from mission_control.records import RecordsUnavailable
from orchestrator import (
    actions,
    explain,
    proxy_health,
    quality,
    records,
    site_breaker,
    states,
    transitions,
    webhooks,
)
from orchestrator.etl_models import EtlStep
from orchestrator.models import (
    BrowserSession,
    DomainBreaker,
    ItemEvidence,
    Mission,
    MissionEvent,
    MissionItem,
    ProxyDomainHealth,
    RecurringMission,
    ScheduleRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from orchestrator.serializers import (
    BrowserSessionSerializer,
    BulkMissionCreateSerializer,
    BulkMissionIdsSerializer,
    BulkMissionSerializer,
    BulkResultSerializer,
    DomainBreakerSerializer,
    DryRunSerializer,
    ErrorSerializer,
    ExplanationSerializer,
    MissionCreateSerializer,
    MissionEventSerializer,
    MissionItemDetailSerializer,
    MissionItemSerializer,
    MissionSerializer,
    OrchestratorStatusSerializer,
    PausedSerializer,
    ProxyDomainHealthSerializer,
    RecurringMissionSerializer,
    ScheduleRunSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
)
from orchestrator.states import ItemStatus, MissionStatus, SessionStatus
from orchestrator.status import orchestrator_status
from registry.models import ProxyType, normalize_domain
from registry.serializers import ActionBodySerializer

# Filters


class _CommaMultipleChoiceField(forms.MultipleChoiceField):
    """Accepts `?status=A&status=B` and `?status=A,B` alike."""

    def to_python(self, value: Any) -> list[str]:
        values = super().to_python(value)
        return [part.strip() for v in values for part in v.split(",") if part.strip()]


class MultiStatusFilter(django_filters.MultipleChoiceFilter):
    field_class = _CommaMultipleChoiceField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A status OR never duplicates rows; DISTINCT would only slow big lists down.
        kwargs.setdefault("distinct", False)
        super().__init__(*args, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": 2**63 - 1})
class IdFilter(django_filters.NumberFilter):
    """A row id: an integer within the database's range (never a 500 on overflow)."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = StrictDateTimeField

    """An ISO 8601 instant compared in UTC. Any valid offset is accepted (RFC 3339
    allows up to ±23:59; PostgreSQL refuses more than ±15:59, so the value is never
    sent with its own offset). An instant outside years 1-9999 in UTC lies beyond
    every stored row: the filter then keeps all rows or none."""

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value in EMPTY_VALUES:
            return qs
        try:
            value = value.astimezone(dt.UTC)
        except OverflowError:
            before_all = value.utcoffset() > dt.timedelta(0)  # earlier than year 1
            keeps_all = (self.lookup_expr in ("gt", "gte")) == before_all
            return qs if keeps_all else qs.none()
        return super().filter(qs, value)


class MissionFilter(StrictFilterSet):
    status = MultiStatusFilter(choices=MissionStatus.choices)
    domain = django_filters.CharFilter(method="filter_domain")
    created_after = InstantFilter(field_name="created_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="created_at", lookup_expr="lt")
    needs_review = StrictBooleanFilter(
        help_text="FINALIZADO missions that failed their site's quality gate."
    )

    class Meta:
        model = Mission
        fields = ["status", "domain", "created_after", "created_before", "needs_review"]

    def filter_domain(
        self, queryset: QuerySet[Mission], name: str, value: str
    ) -> QuerySet[Mission]:
        return queryset.filter(domain=normalize_domain(value))


class MissionItemFilter(StrictFilterSet):
    status = MultiStatusFilter(choices=ItemStatus.choices)

    class Meta:
        model = MissionItem
        fields = ["status"]


class SessionFilter(StrictFilterSet):
    status = MultiStatusFilter(choices=SessionStatus.choices)
    mission = IdFilter(field_name="mission_id")
    worker = IdFilter(field_name="worker_id")
    proxy_type = django_filters.ChoiceFilter(field_name="proxy_type", choices=ProxyType.choices)
    proxy_country = django_filters.CharFilter(method="filter_country")

    class Meta:
        model = BrowserSession
        fields = ["status", "mission", "worker", "proxy_type", "proxy_country"]

    def filter_country(
        self, queryset: QuerySet[BrowserSession], name: str, value: str
    ) -> QuerySet[BrowserSession]:
        return queryset.filter(proxy_country=value.strip().upper())


# Pagination


class TieBreakCursorPagination(CursorPagination):
    """Cursor pages over a client-chosen ordering, made total with `-id` so that rows
    sharing a value (same priority, same status) are neither skipped nor repeated."""

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        ordering = super().get_ordering(request, queryset, view)
        if not any(f.lstrip("-") in ("id", "pk") for f in ordering):
            ordering = (*ordering, "-id")
        return ordering


class AscendingCursorPagination(CursorPagination):
    ordering = "id"


# Missions


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is larger than the server accepts."


class BodyLimitMixin:
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE is the client's error (413), not a 500."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            exc = PayloadTooLarge()
        return super().handle_exception(exc)  # type: ignore[misc]


def _actor(request: Request) -> str:
    return getattr(request.user, "username", "") or ""


@extend_schema_view(
    list=extend_schema(summary="List missions"),
    retrieve=extend_schema(summary="Mission detail with counters, progress and checkpoints"),
)
class MissionViewSet(
    BodyLimitMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Missions change state only through actions (create, cancel, retry)."""

    serializer_class = MissionSerializer
    pagination_class = TieBreakCursorPagination
    filter_backends = [FilterBackend, filters.SearchFilter, filters.OrderingFilter]
    filterset_class = MissionFilter
    search_fields = ["name", "domain"]
    ordering_fields = ["id", "created_at", "priority", "name", "status"]
    ordering = ["-id"]
    lookup_value_regex = r"\d+"
    action_roles = {"create": OPERATOR, "cancel": OPERATOR, "retry": OPERATOR, "bulk": OPERATOR}

    def get_queryset(self) -> QuerySet[Mission]:
        # The ETL link in one join and its pending steps in one subquery (no N+1).
        pending = (
            EtlStep.objects.filter(mission=OuterRef("pk"))
            .order_by()
            .values("mission")
            .annotate(n=Count("id"))
            .values("n")
        )
        return Mission.objects.select_related("writer", "created_by", "etl_run").annotate(
            etl_pending_steps=Coalesce(Subquery(pending), 0)
        )

    def _mission(self, pk: Any) -> Mission:
        # Not get_object(): the mission filters must not apply to nested lists.
        return get_object_or_404(Mission.objects.all(), pk=pk)

    @extend_schema(
        request=MissionCreateSerializer,
        responses={
            201: MissionSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
            503: ErrorSerializer,
        },
    )
    def create(self, request: Request) -> Response:
        serializer = MissionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        mission = actions.create_mission(**serializer.validated_data, user=request.user)
        mission = self.get_queryset().get(pk=mission.pk)
        return Response(MissionSerializer(mission).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: MissionSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        return self._apply(actions.cancel_mission, request, pk)

    @extend_schema(request=None, responses={200: MissionSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        return self._apply(actions.retry_mission, request, pk)

    def _apply(self, fn: Any, request: Request, pk: str) -> Response:
        mission = self._mission(pk)
        try:
            fn(mission, actor=_actor(request))
        except actions.ActionError as exc:
            raise Conflict(exc.message, code=exc.code) from None
        return Response(MissionSerializer(self.get_queryset().get(pk=mission.pk)).data)

    @extend_schema(
        request=ActionBodySerializer(
            component_name="BulkMission",
            serializers={
                "create": BulkMissionCreateSerializer,
                "cancel": BulkMissionIdsSerializer,
                "retry": BulkMissionIdsSerializer,
            },
            resource_type_field_name="action",
        ),
        responses={
            200: BulkResultSerializer,
            201: BulkResultSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
        description="Validated whole first: per-index errors and nothing written if any entry "
        "is invalid (400) or in a state that forbids the action (409); else applied in one "
        "transaction. `create` answers 201, `cancel` and `retry` 200. A schema-valid "
        "request is refused (400) only for an id that does not exist or is listed twice, "
        f"a writer that does not exist, or more than {actions.MAX_URLS_PER_MISSION} URLs "
        "in all.",
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        serializer = BulkMissionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        missions = apply_bulk(serializer.validated_data, request)
        ordered = self.get_queryset().filter(pk__in=[m.pk for m in missions]).in_bulk()
        body = {
            "action": serializer.validated_data["action"],
            "count": len(missions),
            "results": [ordered[m.pk] for m in missions],
        }
        code = status.HTTP_201_CREATED if body["action"] == "create" else status.HTTP_200_OK
        return Response(BulkResultSerializer(body).data, status=code)

    @extend_schema(responses=MissionEventSerializer(many=True))
    @action(detail=True, filter_backends=[], pagination_class=CursorPagination)
    def events(self, request: Request, pk: str) -> Response:
        mission = self._mission(pk)
        page = self.paginate_queryset(MissionEvent.objects.filter(mission=mission))
        return self.get_paginated_response(MissionEventSerializer(page, many=True).data)

    @extend_schema(
        responses=MissionItemSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "status",
                str,
                many=True,
                enum=ItemStatus.values,
                description="One or several item statuses (repeat or comma-separate).",
            )
        ],
    )
    @action(detail=True, filter_backends=[], pagination_class=AscendingCursorPagination)
    def items(self, request: Request, pk: str) -> Response:
        mission = self._mission(pk)
        filterset = MissionItemFilter(
            request.query_params, queryset=MissionItem.objects.filter(mission=mission)
        )
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        page = self.paginate_queryset(filterset.qs)
        return self.get_paginated_response(MissionItemSerializer(page, many=True).data)

    @extend_schema(responses=MissionItemDetailSerializer)
    @action(detail=True, filter_backends=[], url_path=r"items/(?P<item_id>[0-9]{1,18})")
    def item(self, request: Request, pk: str, item_id: str) -> Response:
        """One item with its extracted record and its last failure evidence."""
        mission = self._mission(pk)
        item = MissionItem.objects.filter(mission=mission, pk=int(item_id)).first()
        if item is None:
            raise NotFound(f"No item {item_id} in mission {mission.pk}.")
        return Response(MissionItemDetailSerializer(item).data)

    def _item(self, pk: str, item_id: str) -> MissionItem:
        mission = self._mission(pk)
        item = MissionItem.objects.filter(mission=mission, pk=int(item_id)).first()
        if item is None:
            raise NotFound(f"No item {item_id} in mission {mission.pk}.")
        return item

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
        description=(
            "One item's extracted record: the built-in writer's, or an external writer's "
            "through its read-back; 409 records_in_external_writer (naming the writer) when "
            "that writer holds it without read-back; 503 when it cannot answer now."
        ),
    )
    @action(detail=True, filter_backends=[], url_path=r"items/(?P<item_id>[0-9]{1,18})/record")
    def item_record(self, request: Request, pk: str, item_id: str) -> Response:
        item = self._item(pk, item_id)
        try:
            found = records.item_record(item.mission_id, item.pk)
        except records.RecordsElsewhere as exc:
            raise RecordsElsewhereConflict(exc.writer_name) from None
        except RecordsUnavailable as exc:
            raise WriterUnavailable(f"O writer não devolveu o registro: {exc}") from None
        if found is None:
            raise NotFound(f"Item {item.pk} has no extracted record.")
        return Response({"mission_id": item.mission_id, "item_id": item.pk, "record": found})

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    @action(
        detail=True,
        filter_backends=[],
        url_path=r"items/(?P<item_id>[0-9]{1,18})/screenshot",
    )
    def item_screenshot(self, request: Request, pk: str, item_id: str) -> Any:
        """The screenshot of the item's last failure evidence (a PNG file in the data
        folder), for authenticated users only."""
        item = self._item(pk, item_id)
        ev = ItemEvidence.objects.filter(item=item).only("screenshot_file").first()
        path = evidence_files.resolve(ev.screenshot_file) if ev else None
        if path is None:
            raise NotFound(f"Item {item.pk} has no screenshot.")
        return screenshot_response(path)

    @extend_schema(responses=BrowserSessionSerializer(many=True))
    @action(detail=True, filter_backends=[], pagination_class=CursorPagination)
    def sessions(self, request: Request, pk: str) -> Response:
        mission = self._mission(pk)
        qs = BrowserSession.objects.filter(mission=mission).select_related("worker")
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(BrowserSessionSerializer(page, many=True).data)


class RecordsElsewhereConflict(Conflict):
    default_code = "records_in_external_writer"

    def __init__(self, writer_name: str):
        super().__init__(records.elsewhere_message(writer_name), code=self.default_code)
        self.fields = {"writer": writer_name}


class WriterUnavailable(APIException):
    status_code = 503
    default_code = "writer_unavailable"
    default_detail = "O writer não devolveu os registros."


def screenshot_response(path: Any) -> FileResponse:
    response = FileResponse(open(path, "rb"), content_type="image/png")  # noqa: SIM115
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=300"
    return response


class BulkConflict(Conflict):
    default_code = "invalid_state"

    def __init__(self, detail: str, fields: dict[str, Any]):
        super().__init__(detail, code="invalid_state")
        self.fields = fields


def apply_bulk(data: dict[str, Any], request: Request) -> list[Mission]:
    """Apply a validated bulk request in one transaction: all entries or none."""
    kind = data["action"]
    with transaction.atomic():
        if kind == "create":
            return [actions.create_mission(**entry, user=request.user) for entry in data["items"]]
        ids: list[int] = data["ids"]
        # Sessions before missions, each in id order (`orchestrator.transitions`), so two
        # bulk requests, or one and the managers, cannot deadlock each other.
        transitions.lock_live_sessions(ids)
        locked = {
            m.pk: m
            for m in Mission.objects.select_for_update(of=("self",))
            .filter(pk__in=ids)
            .order_by("pk")
        }
        allowed = states.CANCELLABLE if kind == "cancel" else states.RETRYABLE_BY_OPERATOR
        verb = "cancelled" if kind == "cancel" else "retried"
        errors: dict[str, str] = {}
        for i, pk in enumerate(ids):
            if pk not in locked:  # deleted since validation
                errors[str(i)] = f"Mission {pk} does not exist."
            elif locked[pk].status not in allowed:
                errors[str(i)] = f"Mission {pk} in {locked[pk].status} cannot be {verb}."
        if errors:
            raise BulkConflict("Some missions cannot change state; nothing was applied.", errors)
        fn = actions.cancel_mission if kind == "cancel" else actions.retry_mission
        try:
            return [fn(locked[pk], actor=_actor(request)) for pk in ids]
        except actions.ActionError as exc:
            raise Conflict(exc.message, code=exc.code) from None


# Sessions


class BrowserSessionViewSet(viewsets.ReadOnlyModelViewSet):
    """Browser sessions on workers (read-only; proxy credentials are never shown)."""

    serializer_class = BrowserSessionSerializer
    pagination_class = CursorPagination
    lookup_value_regex = r"\d+"
    filter_backends = [FilterBackend]
    filterset_class = SessionFilter

    def get_queryset(self) -> QuerySet[BrowserSession]:
        return BrowserSession.objects.select_related("worker")


# Recurring missions


_RECURRING_WRITE = {400: ErrorSerializer, 409: ErrorSerializer}  # 409: no ETL to resume from


@extend_schema_view(
    create=extend_schema(responses={201: RecurringMissionSerializer, **_RECURRING_WRITE}),
    update=extend_schema(responses={200: RecurringMissionSerializer, **_RECURRING_WRITE}),
    partial_update=extend_schema(responses={200: RecurringMissionSerializer, **_RECURRING_WRITE}),
)
class RecurringMissionViewSet(BodyLimitMixin, viewsets.ModelViewSet):
    serializer_class = RecurringMissionSerializer
    queryset = RecurringMission.objects.all()
    lookup_value_regex = r"\d+"
    write_role = OPERATOR
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "domain"]
    ordering_fields = ["name", "next_run_at", "created_at"]
    ordering = ["name"]


# Execution


class OrchestratorStatusView(APIView):
    """Live orchestrator instances, queue depth, sessions, capacity and proxies."""

    @extend_schema(responses=OrchestratorStatusSerializer, operation_id="orchestrator_status")
    def get(self, request: Request) -> Response:
        data = orchestrator_status(timezone.now())
        return Response(OrchestratorStatusSerializer(data).data)


class OrchestratorStatusSlashView(OrchestratorStatusView):
    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return super().get(request)


class _PauseView(APIView):
    write_role = OPERATOR
    paused: bool

    @extend_schema(request=None, responses=PausedSerializer)
    def post(self, request: Request) -> Response:
        return Response({"paused": actions.set_paused(self.paused)})


class PauseView(_PauseView):
    """Managers claim no new work until resumed."""

    paused = True


class ResumeView(_PauseView):
    paused = False


__all__ = [
    "BrowserSessionViewSet",
    "MissionViewSet",
    "OrchestratorStatusView",
    "PauseView",
    "RecurringMissionViewSet",
    "ResumeView",
]


# Why is this waiting? (orchestrator/explain.py)


class MissionExplainView(APIView):
    """Per blocked group of items, the constraints that keep the mission waiting."""

    @extend_schema(
        responses={200: ExplanationSerializer, 404: ErrorSerializer},
        operation_id="missions_explain",
        summary="Why is this mission waiting?",
    )
    def get(self, request: Request, pk: int) -> Response:
        mission = get_object_or_404(Mission.objects.all(), pk=pk)
        return Response(ExplanationSerializer(explain.explain_mission(mission).as_dict()).data)


class AllocationDryRunView(APIView):
    """What a hypothetical mission would get now; reads only, writes nothing."""

    write_role = VIEWER

    @extend_schema(
        request=DryRunSerializer,
        responses={200: ExplanationSerializer, 400: ErrorSerializer},
        operation_id="allocation_dry_run",
        summary="Dry-run the allocation of a hypothetical mission",
    )
    def post(self, request: Request) -> Response:
        serializer = DryRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        writer = data.get("writer")
        result = explain.dry_run(
            domain=data["domain"],
            url_count=data["url_count"],
            site=serializer.site_config(),
            writer_id=writer.pk if writer else None,
        )
        return Response(ExplanationSerializer(result.as_dict()).data)


# Webhooks (orchestrator/webhooks.py)


class WebhookDeliveryFilter(StrictFilterSet):
    status = MultiStatusFilter(choices=WebhookDelivery.Status.choices)
    endpoint = IdFilter(field_name="endpoint_id")
    event = django_filters.CharFilter(field_name="event")

    class Meta:
        model = WebhookDelivery
        fields = ["status", "endpoint", "event"]


class WebhookEndpointViewSet(BodyLimitMixin, viewsets.ModelViewSet):
    """Endpoints and the events they receive (admin only; the secret is write-only)."""

    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.all()
    lookup_value_regex = r"\d+"
    filter_backends = [filters.OrderingFilter]
    ordering = ["name"]

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        delivery = webhooks.send_test(self.get_object())
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Every delivery with its attempts; `replay` sends one again."""

    serializer_class = WebhookDeliverySerializer
    pagination_class = CursorPagination
    lookup_value_regex = r"\d+"
    filter_backends = [FilterBackend]
    filterset_class = WebhookDeliveryFilter
    action_roles = {"replay": OPERATOR}

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return WebhookDelivery.objects.prefetch_related("attempt_log")

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str) -> Response:
        delivery = webhooks.replay(self.get_object())
        return Response(
            WebhookDeliverySerializer(self.get_queryset().get(pk=delivery.pk)).data,
            status=status.HTTP_202_ACCEPTED,
        )


# Recurring runs (orchestrator/schedules.py)


class ScheduleRunFilter(StrictFilterSet):
    outcome = MultiStatusFilter(choices=ScheduleRun.Outcome.choices)

    class Meta:
        model = ScheduleRun
        fields = ["outcome"]


class RecurringMissionRunsView(APIView):
    """What every due run of a recurring mission did (created, skipped, queued,
    cancelled the previous one, failed), with runs missed while down."""

    @extend_schema(
        # A cursor page, like every other growing list.
        responses=inline_serializer(
            "PaginatedScheduleRunList",
            {
                "next": strict_json.URLField(allow_null=True),
                "previous": strict_json.URLField(allow_null=True),
                "results": ScheduleRunSerializer(many=True),
            },
        ),
        operation_id="recurring_missions_runs",
        parameters=[
            OpenApiParameter(
                "outcome", str, many=True, enum=ScheduleRun.Outcome.values, required=False
            )
        ],
    )
    def get(self, request: Request, pk: int) -> Response:
        schedule = get_object_or_404(RecurringMission.objects.all(), pk=pk)
        filterset = ScheduleRunFilter(
            request.query_params, queryset=ScheduleRun.objects.filter(schedule=schedule)
        )
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        paginator = CursorPagination()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(ScheduleRunSerializer(page, many=True).data)


# Proxy x site health (orchestrator/proxy_health.py)


class ProxyHealthFilter(StrictFilterSet):
    domain = django_filters.CharFilter(method="filter_domain")
    proxy = django_filters.CharFilter(field_name="proxy__external_id")
    blocked = StrictBooleanFilter(method="filter_blocked")

    class Meta:
        model = ProxyDomainHealth
        fields = ["domain", "proxy", "blocked"]

    def filter_domain(
        self, queryset: QuerySet[ProxyDomainHealth], name: str, value: str
    ) -> QuerySet[ProxyDomainHealth]:
        return queryset.filter(domain=normalize_domain(value))

    def filter_blocked(
        self, queryset: QuerySet[ProxyDomainHealth], name: str, value: bool
    ) -> QuerySet[ProxyDomainHealth]:
        now = timezone.now()
        if value:
            return queryset.filter(blocked_until__gt=now)
        return queryset.exclude(blocked_until__gt=now)


class ProxyHealthViewSet(viewsets.ReadOnlyModelViewSet):
    """Learned health of each proxy on each site; `lift` clears a block (admin)."""

    serializer_class = ProxyDomainHealthSerializer
    pagination_class = TieBreakCursorPagination
    lookup_value_regex = r"\d+"
    filter_backends = [FilterBackend, filters.OrderingFilter]
    filterset_class = ProxyHealthFilter
    ordering_fields = ["score", "updated_at", "domain"]
    ordering = ["-score"]

    def get_queryset(self) -> QuerySet[ProxyDomainHealth]:
        return ProxyDomainHealth.objects.select_related("proxy")

    @extend_schema(request=None, responses={200: ProxyDomainHealthSerializer})
    @action(detail=True, methods=["post"])
    def lift(self, request: Request, pk: str) -> Response:
        row = self.get_object()
        proxy_health.lift(row)
        return Response(ProxyDomainHealthSerializer(self.get_queryset().get(pk=row.pk)).data)


# Quality gate (orchestrator/quality.py)


class MissionReviewedView(APIView):
    """An operator reviewed a flagged mission: clear `needs_review`."""

    write_role = OPERATOR

    @extend_schema(
        request=None,
        responses={200: MissionSerializer, 404: ErrorSerializer},
        operation_id="missions_reviewed",
    )
    def post(self, request: Request, pk: int) -> Response:
        mission = get_object_or_404(Mission.objects.all(), pk=pk)
        quality.mark_reviewed(mission)
        mission.log(
            MissionEvent.Kind.INFO,
            f"Revisão concluída por {_actor(request) or 'operador'}",
            now=timezone.now(),
        )
        return Response(
            MissionSerializer(
                Mission.objects.select_related("writer", "created_by").get(pk=pk)
            ).data
        )


# Per-site circuit breaker (orchestrator/site_breaker.py)


class DomainBreakerListView(APIView):
    """Every site the breaker has seen: state, window counters, why it is paused."""

    @extend_schema(
        responses=DomainBreakerSerializer(many=True),
        operation_id="execution_domains",
        parameters=[OpenApiParameter("paused", bool, required=False)],
    )
    def get(self, request: Request) -> Response:
        qs = DomainBreaker.objects.all()
        try:
            paused = strict_bool(request.query_params.get("paused"))
        except DjangoValidationError as exc:
            raise ValidationError({"paused": exc.messages}) from None
        if paused:
            qs = qs.filter(state=DomainBreaker.State.OPEN, paused_until__gt=timezone.now())
        return Response(DomainBreakerSerializer(qs[:500], many=True).data)


class DomainResumeView(APIView):
    """Resume a paused site now (operators)."""

    write_role = OPERATOR

    @extend_schema(
        request=None,
        responses={200: DomainBreakerSerializer, 404: ErrorSerializer},
        operation_id="execution_domains_resume",
    )
    def post(self, request: Request, domain: str) -> Response:
        row = site_breaker.resume(domain, actor=_actor(request))
        if row is None:
            raise NotFound("No breaker for this domain.")
        return Response(DomainBreakerSerializer(row).data)
