"""REST serializers of the orchestrator: they validate input and shape output; state
changes happen in `orchestrator.actions`."""

from __future__ import annotations

import copy
import re
import zoneinfo
from typing import Any, ClassVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mission_control import outbound, strict_json
from mission_control.logging import redact
from mission_control.permissions import ADMIN, has_role
from mission_control.records import RecordsUnavailable
from orchestrator import actions, etl_outbox, records
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
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from orchestrator.schedules import next_run
from orchestrator.states import MissionStatus
from orchestrator.status import validate_cron, validate_timezone
from registry.models import SiteConfig, Writer, normalize_domain
from registry.serializers import (
    DOMAIN_PATTERN,
    HTTP_URL_PATTERN,
    MAX_BULK_ITEMS,
    TEXT_PATTERN,
    WEBHOOK_URL_GRAMMAR,
    WEBHOOK_URL_PATTERN,
    BulkItemsField,
    CountryCodeField,
    DomainField,
    ProxyIdField,
    ProxyTypeChoiceField,
    RequestSchema,
    exact_match,
)

MAX_BULK_ENTRIES = MAX_BULK_ITEMS
_INDEXED = re.compile(r"^(\d+): (.*)$", re.DOTALL)
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


def url_errors(exc: DjangoValidationError) -> Any:
    """`clean_urls` errors as {index: reason} (or one message when not per index)."""
    messages = exc.message_dict.get("urls", exc.messages)
    by_index: dict[str, str] = {}
    for message in messages:
        match = _INDEXED.match(message)
        if match is None:
            return " ".join(messages)
        by_index[match.group(1)] = match.group(2)
    return by_index


# A cron expression the schema promises to accept: five plain fields whose values
# always fire (day of month up to 28). Ranges, steps and @aliases are accepted too.
CRON_PATTERN = (
    r"^(?:\*|[1-5]?[0-9]) (?:\*|1?[0-9]|2[0-3]) (?:\*|[1-9]|1[0-9]|2[0-8]) "
    r"(?:\*|[1-9]|1[0-2]) (?:\*|[0-6])$"
)


class UrlListField(RequestSchema, serializers.Field):
    """A JSON array of URLs passed through as is.

    A ListField with a child field runs one validator chain per entry, which is far too
    slow for 100k URLs; `actions.clean_urls` validates the entries in one pass instead.
    """

    request_schema: ClassVar = {
        "type": "array",
        "minItems": 1,
        "maxItems": actions.MAX_URLS_PER_MISSION,
        "items": {
            "type": "string",
            "format": "uri",
            "pattern": HTTP_URL_PATTERN,
            "maxLength": actions.MAX_URL_LENGTH,
        },
    }
    response_schema: ClassVar = {"type": "array", "items": {"type": "string"}}

    default_error_messages = {"not_a_list": "Expected a list of items."}

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            self.fail("not_a_list")
        return data

    def to_representation(self, value: Any) -> list[Any]:
        return list(value)


def clean_domain(value: str) -> str:
    domain = normalize_domain(value)
    if domain and not _DOMAIN.match(domain):
        raise serializers.ValidationError("Enter a valid domain name, e.g. example.com.")
    return domain


def enabled_writers() -> Any:
    return Writer.objects.filter(enabled=True)


class ChoiceLabelField(strict_json.CharField):
    """The pt-BR label of a model field's choice (what `get_<field>_display` returns),
    read-only. Not `source="get_<field>_display"`: DRF inspects a callable source's
    signature on every row, a fifth of a mission list page's time."""

    def __init__(self, choices: Any, **kwargs: Any) -> None:
        self.labels = dict(choices)
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return str(self.labels.get(value, value))


class ServiceRefSerializer(serializers.Serializer):
    id = strict_json.IntegerField(read_only=True)
    name = strict_json.CharField(read_only=True)


class CountersSerializer(serializers.Serializer):
    total_items = strict_json.IntegerField(read_only=True)
    done_items = strict_json.IntegerField(read_only=True)
    failed_items = strict_json.IntegerField(read_only=True)
    pending_items = strict_json.IntegerField(read_only=True)
    records_delivered = strict_json.IntegerField(read_only=True)
    session_rotations = strict_json.IntegerField(read_only=True)


class CheckpointsSerializer(serializers.Serializer):
    atribuido_at = serializers.DateTimeField(read_only=True, allow_null=True)
    extraindo_at = serializers.DateTimeField(read_only=True, allow_null=True)
    armazenando_at = serializers.DateTimeField(read_only=True, allow_null=True)
    finalizado_at = serializers.DateTimeField(read_only=True, allow_null=True)


class EtlLinkSerializer(serializers.Serializer):
    """The ETL run a mission owns (docs/contracts/etl-api.md) and how far its sync is."""

    run_id = strict_json.CharField(
        allow_null=True, help_text="Null until the ETL created the run (it may be down)."
    )
    origin = strict_json.ChoiceField(
        choices=["created", "resumed"], help_text="The mission created the run or resumed it."
    )
    origin_display = strict_json.CharField(help_text="pt-BR: criada / retomada.")
    owner = strict_json.BooleanField(
        help_text="The mission is the run's live owner (false once it ended)."
    )
    sync = strict_json.ChoiceField(
        choices=["up_to_date", "pending", "behind", "error"],
        help_text="up_to_date: nothing owed; pending: steps queued; behind: steps failing "
        "since `failing_since`; error: the ETL refused a step (`last_error`).",
    )
    sync_display = strict_json.CharField(
        help_text='pt-BR: "em dia", "envio pendente", "atrasado desde …", "com erro: …".'
    )
    failing_since = serializers.DateTimeField(allow_null=True)
    last_ok_at = serializers.DateTimeField(allow_null=True)
    last_error = strict_json.CharField(allow_blank=True)
    pending_steps = strict_json.IntegerField(help_text="ETL steps still in the outbox.")
    finalized_status = strict_json.CharField(
        allow_null=True, help_text="completed / failed / cancelled once the finalize was sent."
    )


class MissionSerializer(strict_json.ModelSerializer):
    """A mission as the API shows it (list and detail)."""

    status_display = ChoiceLabelField(MissionStatus.choices, source="status")
    progress = strict_json.FloatField(read_only=True, help_text="Settled items / total, 0..1.")
    counters = CountersSerializer(source="*", read_only=True)
    checkpoints = CheckpointsSerializer(source="*", read_only=True)
    writer = ServiceRefSerializer(read_only=True, allow_null=True)
    created_by = strict_json.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    etl = serializers.SerializerMethodField(
        help_text="The ETL run link (null without an ETL): run id, created or resumed, "
        "sync state and pending steps."
    )

    class Meta:
        model = Mission
        fields = [
            "id",
            "name",
            "domain",
            "status",
            "status_display",
            "priority",
            "attempt",
            "next_attempt_at",
            "progress",
            "counters",
            "checkpoints",
            "wait_reason",
            "error_code",
            "error_message",
            "needs_review",
            "review_failures",
            "writer",
            "schedule",
            "created_by",
            "etl_run_id",
            "etl",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(EtlLinkSerializer(allow_null=True))
    def get_etl(self, mission: Mission) -> dict[str, Any] | None:
        return etl_outbox.api_link(mission)


class OptionalDomainField(RequestSchema, strict_json.CharField):
    """A host name, or blank to derive it from the URLs."""

    request_schema: ClassVar = {
        "type": "string",
        "pattern": rf"^$|{DOMAIN_PATTERN}",
        "maxLength": 253,
    }


class CronField(RequestSchema, strict_json.CharField):
    """A five-field cron expression (validated by `validate_cron`)."""

    request_schema: ClassVar = {"type": "string", "pattern": CRON_PATTERN, "maxLength": 100}


class TimezoneField(RequestSchema, strict_json.CharField):
    """An IANA time zone name."""

    request_schema: ClassVar = {"type": "string", "enum": sorted(zoneinfo.available_timezones())}


class NonBlankNameField(RequestSchema, strict_json.CharField):
    """A name with at least one visible character (it is stored stripped)."""

    request_schema: ClassVar = {"type": "string", "pattern": TEXT_PATTERN, "maxLength": 200}


class MissionCreateSerializer(serializers.Serializer):
    name = NonBlankNameField(max_length=200)
    domain = OptionalDomainField(
        max_length=253,
        required=False,
        allow_blank=True,
        default="",
        help_text="Derived from the URLs (most common host) when absent.",
    )
    urls = UrlListField(
        required=False,
        default=list,
        help_text=f"Absolute http(s) URLs; duplicates are dropped; at most "
        f"{actions.MAX_URLS_PER_MISSION} distinct. Absent (with a domain and an ETL "
        "configured): resume the domain's latest unfinished ETL run.",
    )
    etl_run = strict_json.RegexField(
        r"^[A-Za-z0-9._:-]{1,100}$",
        required=False,
        allow_null=True,
        default=None,
        max_length=100,
        help_text='ETL run to resume: "latest" (of the domain) or a run id; its pending '
        "items become the mission's URLs (409 when it is finished or owned by a live "
        "mission, 503 when the ETL is down).",
    )
    priority = strict_json.IntegerField(
        required=False, default=0, min_value=-1_000_000, max_value=1_000_000
    )
    writer = serializers.PrimaryKeyRelatedField(
        queryset=enabled_writers(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Writer id; the default writer when absent.",
    )

    def validate_domain(self, value: str) -> str:
        return clean_domain(value)

    def validate_urls(self, value: list[Any]) -> list[str]:
        if not value:
            return []
        try:
            return actions.clean_urls(value).urls
        except DjangoValidationError as exc:
            raise serializers.ValidationError(url_errors(exc)) from None


class MissionItemSerializer(strict_json.ModelSerializer):
    class Meta:
        model = MissionItem
        fields = [
            "id",
            "url",
            "status",
            "attempts",
            "session",
            "error_code",
            "error_message",
            "http_status",
            "finished_at",
        ]
        read_only_fields = fields


class ItemEvidenceSerializer(strict_json.ModelSerializer):
    # Where the screenshot is served (logged-in or token users only); null when none.
    screenshot_url = serializers.SerializerMethodField()

    @extend_schema_field(strict_json.CharField(allow_null=True))
    def get_screenshot_url(self, ev: ItemEvidence) -> str | None:
        if not ev.screenshot_file:
            return None
        return f"/api/missions/{ev.item.mission_id}/items/{ev.item_id}/screenshot/"

    class Meta:
        model = ItemEvidence
        fields = [
            "attempt",
            "error_code",
            "final_url",
            "http_status",
            "headers",
            "html_excerpt",
            "block_marker",
            "screenshot_url",
            "upload_url",
            "captured_at",
        ]
        read_only_fields = fields


class MissionItemDetailSerializer(MissionItemSerializer):
    """One item with its extracted record (built-in writer) and its failure evidence."""

    evidence = serializers.SerializerMethodField()
    record = serializers.SerializerMethodField()

    class Meta(MissionItemSerializer.Meta):
        fields = [*MissionItemSerializer.Meta.fields, "record", "evidence"]
        read_only_fields = fields

    @extend_schema_field(ItemEvidenceSerializer(allow_null=True))
    def get_evidence(self, item: MissionItem) -> dict[str, Any] | None:
        found = ItemEvidence.objects.filter(item=item).select_related("item").first()
        return ItemEvidenceSerializer(found).data if found else None

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_record(self, item: MissionItem) -> Any:
        return item_record(item)


def item_record(item: MissionItem) -> Any:
    """The record extracted for this item: the built-in writer's, or an external
    writer's through its read-back (None when nothing was extracted, or the writer holds
    it without read-back or cannot answer now: `GET .../record/` says which)."""
    try:
        return records.item_record(item.mission_id, item.pk)
    except (records.RecordsElsewhere, RecordsUnavailable):
        return None


class MissionEventSerializer(strict_json.ModelSerializer):
    class Meta:
        model = MissionEvent
        fields = [
            "id",
            "created_at",
            "kind",
            "from_status",
            "to_status",
            "attempt",
            "error_code",
            "message",
            "actor",
            "data",
        ]
        read_only_fields = fields


class ProxyRefSerializer(serializers.Serializer):
    """What a session says about its proxy: never host, user or password."""

    id = strict_json.IntegerField(source="proxy_id", read_only=True, allow_null=True)
    external_id = strict_json.CharField(source="proxy_external_id", read_only=True)
    type = strict_json.CharField(source="proxy_type", read_only=True)
    country = strict_json.CharField(source="proxy_country", read_only=True)


class BrowserSessionSerializer(strict_json.ModelSerializer):
    worker = ServiceRefSerializer(read_only=True)
    proxy = ProxyRefSerializer(source="*", read_only=True)

    class Meta:
        model = BrowserSession
        fields = [
            "id",
            "mission",
            "worker",
            "proxy",
            "attempt",
            "session_key",
            "remote_id",
            "status",
            "phase",
            "provider",
            "provider_session_id",
            "provider_inspect_url",
            "engine",
            "holds_slot",
            "job_seq",
            "job_status",
            "job_pages",
            "job_started_at",
            "jobs_done",
            "items_done",
            "items_failed",
            "last_activity_at",
            "last_polled_at",
            "opened_at",
            "closed_at",
            "error_code",
            "error_message",
            "locked_by",
            "locked_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class BulkMissionIdsSerializer(serializers.Serializer):
    """`{"action": "cancel"|"retry", "ids": [...]}`: each id once, each an existing mission."""

    action = strict_json.ChoiceField(choices=["cancel", "retry"])
    ids = serializers.ListField(
        child=strict_json.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=MAX_BULK_ENTRIES,
        help_text="Missions to cancel or retry, each once.",
    )

    def validate_ids(self, ids: list[int]) -> list[int]:
        errors: dict[str, str] = {}
        seen: set[int] = set()
        for index, pk in enumerate(ids):
            if pk in seen:
                errors[str(index)] = f"Mission {pk} is listed twice."
            seen.add(pk)
        existing = set(Mission.objects.filter(pk__in=seen).values_list("pk", flat=True))
        for index, pk in enumerate(ids):
            if pk not in existing:
                errors.setdefault(str(index), f"Mission {pk} does not exist.")
        if errors:
            raise serializers.ValidationError(errors)
        return ids


class BulkMissionCreateSerializer(serializers.Serializer):
    """Missions to create, each the body of `POST /api/missions/`."""

    # Schema only: BulkMissionSerializer validates each entry with MissionCreateSerializer
    # so that errors come by index.

    action = strict_json.ChoiceField(choices=[("create", "create missions")])
    items = BulkItemsField(MissionCreateSerializer)


class BulkMissionSerializer(serializers.Serializer):
    """`{"action": "create", "items": [...]}` or `{"action": "cancel"|"retry", "ids": [...]}`;
    only the part the action names is read.

    Every entry is validated before anything is written; errors are reported per index.
    """

    action = strict_json.ChoiceField(choices=["create", "cancel", "retry"])

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        action = super().to_internal_value(data)["action"]
        if action != "create":
            ids = BulkMissionIdsSerializer(data=data)
            if not ids.is_valid():
                raise serializers.ValidationError(ids.errors)
            return dict(ids.validated_data)
        items = serializers.ListField(
            child=serializers.DictField(), min_length=1, max_length=MAX_BULK_ENTRIES
        )
        try:
            entries = items.run_validation(data.get("items", serializers.empty))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"items": exc.detail}) from None
        return self._validate_create(entries)

    def _validate_create(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        cleaned: list[dict[str, Any]] = []
        total_urls = 0
        for index, entry in enumerate(entries):
            serializer = MissionCreateSerializer(data=entry)
            if serializer.is_valid():
                cleaned.append(dict(serializer.validated_data))
                total_urls += len(serializer.validated_data["urls"])
            else:
                errors[str(index)] = serializer.errors
        if errors:
            raise serializers.ValidationError({"items": errors})
        if total_urls > actions.MAX_URLS_PER_MISSION:
            raise serializers.ValidationError(
                {"items": f"At most {actions.MAX_URLS_PER_MISSION} URLs in one request."}
            )
        return {"action": "create", "items": cleaned}


class BulkResultSerializer(serializers.Serializer):
    action = strict_json.CharField()
    count = strict_json.IntegerField()
    results = MissionSerializer(many=True)


class RecurringMissionSerializer(strict_json.ModelSerializer):
    name = NonBlankNameField(max_length=200)
    cron = CronField(max_length=100, help_text="Cron expression, e.g. '0 6 * * *'.")
    timezone = TimezoneField(max_length=64, required=False)
    domain = OptionalDomainField(max_length=253, required=False, allow_blank=True)
    urls = UrlListField(
        required=False,
        help_text="Absolute http(s) URLs. Empty (with an ETL configured): each run resumes "
        "an ETL run's pending items, the domain's latest unfinished one or `etl_run`.",
    )
    etl_run = strict_json.RegexField(
        etl_outbox.ETL_RUN_PATTERN,
        required=False,
        allow_blank=True,
        max_length=100,
        help_text='Without URLs: the ETL run each run resumes, "latest" (or blank: the '
        "domain's latest unfinished run) or a run id. A run that cannot be resumed "
        "when due is a failed schedule run, with the reason.",
    )
    writer = serializers.PrimaryKeyRelatedField(
        queryset=enabled_writers(), required=False, allow_null=True
    )
    priority = strict_json.IntegerField(
        required=False, default=0, min_value=-1_000_000, max_value=1_000_000
    )

    class Meta:
        model = RecurringMission
        fields = [
            "id",
            "name",
            "cron",
            "timezone",
            "urls",
            "domain",
            "etl_run",
            "priority",
            "writer",
            "enabled",
            "overlap_policy",
            "queued_run_at",
            "last_run_at",
            "next_run_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "queued_run_at",
            "last_run_at",
            "next_run_at",
            "created_at",
            "updated_at",
        ]

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value.strip()

    def validate_cron(self, value: str) -> str:
        try:
            return validate_cron(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate_timezone(self, value: str) -> str:
        try:
            return validate_timezone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate_urls(self, value: list[Any]) -> list[str]:
        if not value:
            return []
        try:
            return actions.clean_urls(value).urls
        except DjangoValidationError as exc:
            raise serializers.ValidationError(url_errors(exc)) from None

    def validate_domain(self, value: str) -> str:
        return clean_domain(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str, default: Any) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name, default)

        urls, etl_run = current("urls", []), current("etl_run", "")
        if not etl_outbox.enabled() and (etl_run or not urls):
            # As for a mission: nothing to resume from is a 409, not a malformed request.
            raise etl_outbox.EtlRefused(
                409,
                "etl_not_configured",
                "Informe as URLs: sem ETL configurado não há execução a retomar.",
            )
        errors = etl_outbox.template_errors(urls, current("domain", ""), etl_run)
        if errors:
            raise serializers.ValidationError(errors, code="etl_resume")
        enabled = current("enabled", True)
        attrs["next_run_at"] = (
            next_run(current("cron", ""), current("timezone", "America/Sao_Paulo"), timezone.now())
            if enabled
            else None
        )
        return attrs


# Documentation-only shapes of GET /api/execution/orchestrator-status.


class ManagerStatsSerializer(serializers.Serializer):
    last_tick_at = strict_json.CharField(allow_null=True)
    duration_ms = strict_json.FloatField(allow_null=True)
    did = serializers.JSONField(allow_null=True)
    error = strict_json.CharField(allow_null=True)
    error_at = strict_json.CharField(allow_null=True)
    ticks = strict_json.IntegerField(allow_null=True)


class InstanceStatusSerializer(serializers.Serializer):
    name = strict_json.CharField()
    hostname = strict_json.CharField()
    pid = strict_json.IntegerField()
    started_at = serializers.DateTimeField()
    heartbeat_at = serializers.DateTimeField()
    event_bus = strict_json.CharField()
    managers = serializers.DictField(child=ManagerStatsSerializer())


class WorkerCapacitySerializer(serializers.Serializer):
    id = strict_json.IntegerField()
    name = strict_json.CharField()
    health_status = strict_json.CharField()
    draining = strict_json.BooleanField()
    active_sessions = strict_json.IntegerField()
    max_sessions = strict_json.IntegerField()
    consecutive_failures = strict_json.IntegerField()
    circuit_open_until = serializers.DateTimeField(allow_null=True)
    circuit_open = strict_json.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)


class CapacitySerializer(serializers.Serializer):
    used = strict_json.IntegerField()
    total = strict_json.IntegerField()
    workers = WorkerCapacitySerializer(many=True)


class OrchestratorStatusSerializer(serializers.Serializer):
    now = serializers.DateTimeField()
    paused = strict_json.BooleanField()
    event_bus = strict_json.ChoiceField(choices=["notify", "polling"])
    heartbeat_stale_after_s = strict_json.IntegerField()
    instances = InstanceStatusSerializer(many=True)
    queue = serializers.DictField(
        child=strict_json.IntegerField(),
        help_text="Missions per state (all states). Exact up to 10,000 missions in a state;"
        " above, PostgreSQL's estimate (see `queue_approximate`).",
    )
    queue_approximate = serializers.ListField(
        child=strict_json.CharField(),
        help_text="States (keys of `queue`) whose count is an estimate, not an exact count.",
    )
    sessions = serializers.DictField(child=strict_json.IntegerField())
    capacity = CapacitySerializer()
    proxies = serializers.DictField(child=strict_json.IntegerField())


class ErrorDetailSerializer(serializers.Serializer):
    code = strict_json.CharField()
    message = strict_json.CharField()

    def get_fields(self) -> dict[str, serializers.Field]:
        # "fields" cannot be declared: it would shadow Serializer.fields.
        fields = dict(super().get_fields())
        fields["fields"] = serializers.JSONField(
            required=False, help_text="Per field (and per index) errors."
        )
        return fields


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API (mission_control.api.exception_handler)."""

    error = ErrorDetailSerializer()


class PausedSerializer(serializers.Serializer):
    paused = strict_json.BooleanField()


# Why is this waiting? (orchestrator/explain.py)


class ConstraintSerializer(serializers.Serializer):
    code = strict_json.CharField(
        help_text="workers, proxies, writer, paused, backoff, rotations, site, sessions, "
        "distribution"
    )
    ok = strict_json.BooleanField()
    message = strict_json.CharField(help_text="The constraint in plain words (pt-BR).")


class ExplainGroupSerializer(serializers.Serializer):
    domain = strict_json.CharField()
    site = strict_json.CharField(help_text="The strategy that applies ('*' = default).")
    pending_items = strict_json.IntegerField()
    constraints = ConstraintSerializer(many=True)
    failed = ConstraintSerializer(many=True)


class ExplanationSerializer(serializers.Serializer):
    mission_id = strict_json.IntegerField(allow_null=True)
    status = strict_json.CharField()
    waiting = strict_json.BooleanField()
    summary = strict_json.CharField(help_text="Every failed constraint, joined by '; '.")
    sessions_possible = strict_json.IntegerField(
        help_text="New sessions an allocation would get right now."
    )
    constraints = ConstraintSerializer(many=True, help_text="Mission-wide constraints.")
    failed = ConstraintSerializer(many=True)
    groups = ExplainGroupSerializer(many=True, help_text="One per domain of the pending items.")


class DryRunSiteSerializer(serializers.Serializer):
    """A hypothetical site config; omitted fields come from the domain's stored one."""

    proxy_types = serializers.ListField(child=ProxyTypeChoiceField(), required=False, max_length=10)
    countries = serializers.ListField(
        child=CountryCodeField(min_length=2, max_length=2), required=False, max_length=300
    )
    blocked_proxies = serializers.ListField(
        child=ProxyIdField(max_length=100), required=False, max_length=10_000
    )
    max_sessions = strict_json.IntegerField(required=False, min_value=1, max_value=1000)
    items_per_job = strict_json.IntegerField(required=False, min_value=1, max_value=1000)
    enabled = strict_json.BooleanField(required=False)
    require_verified_geo = strict_json.BooleanField(required=False)


class DryRunSerializer(serializers.Serializer):
    domain = DomainField(max_length=253)
    url_count = strict_json.IntegerField(min_value=1, max_value=actions.MAX_URLS_PER_MISSION)
    site = DryRunSiteSerializer(required=False)
    writer = serializers.PrimaryKeyRelatedField(
        queryset=enabled_writers(), required=False, allow_null=True
    )

    def validate_domain(self, value: str) -> str:
        domain = clean_domain(value)
        if not domain:
            raise serializers.ValidationError("This field may not be blank.")
        return domain

    def site_config(self) -> SiteConfig:
        """The stored config of the domain with the hypothetical fields laid over it
        (an unsaved copy: a dry run never writes)."""
        data = self.validated_data
        stored = SiteConfig.for_domain(data["domain"])
        # Every resolved field (the domain cap, pacing, providers, where each came
        # from), not only the proxy ones: the dry run must see the domain's cap.
        site = copy.copy(stored)
        for name in ("proxy_types", "countries", "blocked_proxies"):
            setattr(site, name, list(getattr(stored, name) or []))
        for key, value in (data.get("site") or {}).items():
            if key == "countries":
                value = sorted({c.upper() for c in value})
            setattr(site, key, value)
        return site


# Webhooks (orchestrator/webhooks.py)


def _event_names() -> list[str]:
    from orchestrator.webhooks import EVENTS

    prefixes = {f"{name.split('.')[0]}.*" for name in EVENTS}
    return sorted({*EVENTS, *prefixes, "*"})


class EventNameField(RequestSchema, strict_json.CharField):
    """An event name or a prefix ending in '*' (checked by `validate_events`)."""

    request_schema: ClassVar = {"type": "string", "enum": _event_names()}


class WebhookUrlField(RequestSchema, strict_json.CharField):
    """Where deliveries are POSTed: exactly WEBHOOK_URL_GRAMMAR (`validate_url`)."""

    request_schema: ClassVar = {
        "type": "string",
        "format": "uri",
        "pattern": WEBHOOK_URL_PATTERN,
        "maxLength": 2048,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)  # the grammar says what is trimmed


class WebhookEndpointSerializer(strict_json.ModelSerializer):
    secret = strict_json.CharField(
        write_only=True,
        min_length=16,
        max_length=200,
        style={"input_type": "password"},
        help_text="Write-only HMAC-SHA256 key (at least 16 characters).",
    )
    events = serializers.ListField(
        child=EventNameField(max_length=100),
        min_length=1,
        max_length=50,
        help_text="Event names, or prefixes ending in '*' ('mission.*', '*').",
    )
    url = WebhookUrlField(max_length=2048)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "name",
            "url",
            "secret",
            "events",
            "enabled",
            "last_success_at",
            "last_failure_at",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "last_success_at",
            "last_failure_at",
            "last_error",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["url"] = redact(data.get("url") or "")  # rows from before credentials were refused
        return data

    def validate_url(self, value: str) -> str:
        """The outbound policy, now: a name that resolves to an internal address is
        refused here (and again at each delivery, where it is pinned)."""
        exact = exact_match(WEBHOOK_URL_GRAMMAR, value)
        if exact is None:
            raise serializers.ValidationError(
                "Enter an http(s) URL with a host name (with a top-level domain) or IPv4 "
                "address, an optional port and path, "
                "e.g. https://hooks.example.com/mc (no credentials, no fragment)."
            )
        value = exact
        URLValidator(schemes=["http", "https"])(value)  # a second line; the grammar is narrower
        problem = outbound.url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        try:
            outbound.check_url(value)
        except outbound.Refused as exc:
            if str(exc) != "cannot resolve host":  # may resolve later; checked then
                raise serializers.ValidationError(
                    f"Endereço não permitido pela política de saída: {exc}."
                ) from None
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        from orchestrator.webhooks import EVENTS

        bad = [
            e
            for e in value
            if e not in EVENTS
            and not (e.endswith("*") and any(k.startswith(e[:-1]) for k in EVENTS))
        ]
        if bad:
            raise serializers.ValidationError(
                f"Unknown events: {', '.join(bad)}. Known: {', '.join(sorted(EVENTS))}."
            )
        return sorted(set(value))


class WebhookAttemptSerializer(strict_json.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "status_code",
            "ok",
            "error",
            "response_body",
            "replay",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Any) -> dict[str, Any]:
        """What the receiver answered is for admins only (it may be an internal page)."""
        data = super().to_representation(instance)
        if not _is_admin(self.context):
            data["response_body"] = ""
            data["error"] = _coarse(data.get("error") or "")
        return data


def _is_admin(context: dict[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and has_role(request.user, ADMIN)


def _coarse(error: str) -> str:
    """An attempt's error as a viewer sees it: the HTTP status, or just "falhou"."""
    return error if not error or error.startswith("HTTP ") else "falhou"


class WebhookDeliverySerializer(strict_json.ModelSerializer):
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not _is_admin(self.context):
            data["last_error"] = _coarse(data.get("last_error") or "")
        return data

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "payload",
            "idempotency_key",
            "status",
            "attempts",
            "next_attempt_at",
            "retry_until",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "attempt_log",
        ]
        read_only_fields = fields


# Recurring runs (orchestrator/schedules.py)


class ScheduleRunSerializer(strict_json.ModelSerializer):
    outcome_display = ChoiceLabelField(ScheduleRun.Outcome.choices, source="outcome")
    # The same choices as RecurringMission.overlap_policy; a plain string keeps one enum.
    policy = strict_json.CharField(read_only=True)

    class Meta:
        model = ScheduleRun
        fields = [
            "id",
            "schedule",
            "due_at",
            "ran_at",
            "outcome",
            "outcome_display",
            "policy",
            "missed",
            "mission",
            "previous_mission",
            "message",
        ]
        read_only_fields = fields


# Proxy x site health (orchestrator/proxy_health.py)


class ProxyDomainHealthSerializer(strict_json.ModelSerializer):
    proxy = strict_json.CharField(source="proxy.external_id", read_only=True)
    proxy_id = strict_json.IntegerField(read_only=True)
    proxy_type = strict_json.CharField(source="proxy.type", read_only=True)
    proxy_country = strict_json.CharField(source="proxy.country", read_only=True)
    blocked = serializers.SerializerMethodField()

    class Meta:
        model = ProxyDomainHealth
        fields = [
            "id",
            "proxy",
            "proxy_id",
            "proxy_type",
            "proxy_country",
            "domain",
            "score",
            "successes",
            "failures",
            "blocked",
            "blocked_until",
            "blocked_reason",
            "last_success_at",
            "last_failure_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_blocked(self, obj: ProxyDomainHealth) -> bool:
        return obj.is_blocked(self.context.get("now") or timezone.now())


# Per-site circuit breaker (orchestrator/site_breaker.py)


class DomainBreakerSerializer(strict_json.ModelSerializer):
    paused = serializers.SerializerMethodField()

    class Meta:
        model = DomainBreaker
        fields = [
            "domain",
            "state",
            "paused",
            "paused_until",
            "reason",
            "window_started_at",
            "results",
            "blocked",
            "trips",
            "opened_at",
            "resumed_by",
            "resumed_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_paused(self, obj: DomainBreaker) -> bool:
        return obj.is_paused(timezone.now())
