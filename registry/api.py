"""REST API of the registry: auth token, the five resources (CRUD, bulk, import,
connection tests) and the typed config keys."""

from __future__ import annotations

import io
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.text import capfirst
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, parsers, serializers, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from audit.log import record_updates
from mission_control import hardening
from mission_control.api import Conflict
from mission_control.filters import StrictFilterSet, strict_bool
from mission_control.throttling import ScopedRateThrottle
from registry import config, connection, importers, streams, tokens
from registry.models import ApiToken, ConfigEntry, Proxy, SiteConfig, Uploader, Worker, Writer
from registry.serializers import (
    BULK_DESCRIPTION,
    ApiTokenSerializer,
    AuthTokenSerializer,
    ConfigKeySerializer,
    ConfigValueSerializer,
    ConnectionTestResultSerializer,
    ProxyImportEntrySerializer,
    ProxyImportFileSerializer,
    ProxySerializer,
    RegistryBulkResultSerializer,
    RegistryBulkSerializer,
    RegistryImportResultSerializer,
    SiteConfigSerializer,
    TokenResponseSerializer,
    UploaderSerializer,
    WorkerSerializer,
    WriterSerializer,
    bulk_request_schema,
)

SERVICE_FILTERS = ["enabled", "health_status"]
SERVICE_ORDERING = ["name", "created_at", "health_status", "last_checked_at"]


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "Request body too large."


def refusal(exc: importers.FileRefused, field: str = "file") -> exceptions.APIException:
    """A refused import file as the API's answer: 413 past the size limit, else 400."""
    if exc.too_large:
        return PayloadTooLarge(f"Import {exc.message}")
    return exceptions.ValidationError({field: exc.message})


def _spooled(stream: Any, *, is_json: bool) -> importers.ProxyFile:
    try:
        return importers.ProxyFile.from_body(stream or io.BytesIO(), is_json=is_json)
    except importers.FileRefused as exc:
        raise refusal(exc, "body") from None


class ProxyJSONParser(parsers.BaseParser):
    """A proxies.json body, spooled to a temporary file and read entry by entry."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return _spooled(stream, is_json=True)


class CSVTextParser(parsers.BaseParser):
    """A text/csv body, spooled to a temporary file and read line by line."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return _spooled(stream, is_json=False)


class TokenView(ObtainAuthToken):
    """POST: exchange username and password for a new API token (shown once; only its
    hash is stored; it expires after API_TOKEN_TTL_DAYS). DELETE: revoke the token that
    authenticates the request."""

    authentication_classes = [tokens.HashedTokenAuthentication]
    permission_classes = [AllowAny]
    parser_classes = [hardening.JSONParser, parsers.FormParser, parsers.MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    serializer_class = AuthTokenSerializer

    def get_authenticators(self) -> list[Any]:
        # Logging in needs no credentials; a stale header must not block it.
        request = getattr(self, "request", None)  # None while the schema is generated
        if request is not None and request.method == "POST":
            return []
        return super().get_authenticators()

    def get_authenticate_header(self, request: Request) -> str:
        # A 401 here names the scheme even on POST, which takes no credentials.
        return "Token"

    @extend_schema(responses=TokenResponseSerializer)
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            if set(serializer.errors) == {"non_field_errors"}:
                # Well-formed but wrong credentials: not authenticated, not a bad request.
                raise exceptions.AuthenticationFailed(
                    "Unable to log in with the given username and password."
                )
            raise exceptions.ValidationError(serializer.errors)
        token, key = tokens.issue(serializer.validated_data["user"])
        return Response({"token": key, "expires_at": token.expires_at})

    @extend_schema(request=None, responses={204: None, 401: OpenApiTypes.OBJECT})
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = tokens.presented_token(request)
        if token is None:
            raise exceptions.NotAuthenticated(
                "Send the token to revoke: Authorization: Token <key>."
            )
        tokens.revoke(type(token).objects.filter(pk=token.pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        description="The logged-in user's API tokens (prefix, dates), newest first."
    ),
    retrieve=extend_schema(description="One of the user's API tokens."),
    destroy=extend_schema(
        description="Revoke one of the user's tokens (204; a revoked one stays listed). "
        "Works with the dashboard's session (send the CSRF token) as with a token."
    ),
)
class ApiTokenViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """The user's own API tokens: listed without key or hash, revocable one by one, from a
    browser session (a user who only logs in to the dashboard) or with a token."""

    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]
    filter_backends: list[Any] = []

    def get_queryset(self) -> Any:
        user = self.request.user
        if not user.is_authenticated:  # the schema generator
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = self.get_object()
        tokens.revoke(ApiToken.objects.filter(pk=token.pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- shared behaviour ---------------------------------------------------------------


def run_bulk(
    view: viewsets.ModelViewSet, data: dict[str, Any], unique_field: str
) -> dict[str, Any]:
    """Validate every entry first; write all of them in one transaction, or nothing."""
    model: type[models.Model] = view.get_queryset().model
    act = data["action"]
    if act in RegistryBulkSerializer.WITH_ITEMS:
        items: list[dict[str, Any]] = data["items"]
        errors: dict[str, Any] = {}
        valid: list[serializers.BaseSerializer] = []
        instances: dict[Any, models.Model] = {}
        if act == "update":
            wanted = [i["id"] for i in items if type(i.get("id")) is int]  # not bool
            instances = model._default_manager.in_bulk(wanted)
        seen: dict[Any, int] = {}
        defaults = 0
        for index, item in enumerate(items):
            instance = None
            if act == "update":
                instance = instances.get(item["id"]) if type(item.get("id")) is int else None
                if instance is None:
                    errors[str(index)] = {
                        "id": f"{capfirst(model._meta.verbose_name)} {item.get('id')!r} "
                        "does not exist."
                    }
                    continue
            body = {k: v for k, v in item.items() if k != "id"}
            serializer = view.get_serializer(instance, data=body, partial=act == "update")
            if not serializer.is_valid():
                errors[str(index)] = serializer.errors
                continue
            key = serializer.validated_data.get(unique_field)
            if key is not None and key in seen:
                errors[str(index)] = {
                    unique_field: f"{key!r} is listed twice (items {seen[key]} and {index})."
                }
                continue
            if key is not None:
                seen[key] = index
            if serializer.validated_data.get("is_default"):
                defaults += 1
                if defaults > 1:
                    errors[str(index)] = {
                        "is_default": "An earlier item already has is_default; only one may."
                    }
                    continue
            valid.append(serializer)
        if errors:
            raise exceptions.ValidationError({"items": errors})
        try:
            with transaction.atomic():
                saved = [s.save() for s in valid]
        except IntegrityError:
            raise Conflict(
                "A unique value clashed with another row; nothing was written."
            ) from None
        return {"action": act, "count": len(saved), "ids": [o.pk for o in saved]}

    ids: list[int] = data["ids"]
    found = set(model._default_manager.filter(pk__in=ids).values_list("pk", flat=True))
    id_errors = {
        str(i): f"{capfirst(model._meta.verbose_name)} {pk} does not exist."
        for i, pk in enumerate(ids)
        if pk not in found
    }
    if id_errors:
        raise exceptions.ValidationError({"ids": id_errors})
    rows = model._default_manager.filter(pk__in=ids)
    if act == "delete":
        try:
            with transaction.atomic():
                rows.delete()
        except ProtectedError as exc:
            raise _protected(model, exc, ids) from None
    else:
        with transaction.atomic():
            record_updates(rows, ["enabled"])
            rows.update(enabled=act == "enable", updated_at=timezone.now())
    return {"action": act, "count": len(set(ids)), "ids": sorted(set(ids))}


def _protected(model: type[models.Model], exc: ProtectedError, ids: list[int]) -> Conflict:
    """A 409 naming the requested ids that other rows still reference."""
    held: set[Any] = set()
    for obj in exc.protected_objects:
        for f in obj._meta.concrete_fields:
            if f.is_relation and f.related_model is model:
                held.add(getattr(obj, f.attname))
    fields = {
        "ids": {
            str(i): "Still in use (e.g. by sessions)." for i, pk in enumerate(ids) if pk in held
        }
    }
    err = Conflict(
        f"{len(held)} {model._meta.verbose_name_plural} are still in use; nothing was deleted."
    )
    err.fields = fields  # type: ignore[attr-defined]
    return err


class RegistryViewSet(viewsets.ModelViewSet):
    """CRUD plus `POST bulk/`; reads need viewer, writes admin (RolePermission)."""

    unique_field = "name"

    def perform_destroy(self, instance: models.Model) -> None:
        try:
            instance.delete()
        except ProtectedError:
            raise Conflict(
                f"This {instance._meta.verbose_name} is still in use (e.g. by sessions); "
                "disable it instead."
            ) from None

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:
            raise Conflict("A unique value clashed with another row.") from None

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        self.perform_create(serializer)

    # Each resource states its own request body (bulk_request_schema).
    @extend_schema(responses=RegistryBulkResultSerializer, description=BULK_DESCRIPTION)
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request: Request) -> Response:
        body = RegistryBulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(run_bulk(self, body.validated_data, self.unique_field))


class ConnectionTestMixin:
    get_object: Any
    throttle_scope: str | None = None  # set per action

    @extend_schema(request=None, responses=ConnectionTestResultSerializer)
    @action(
        detail=True,
        methods=["post"],
        url_path="test-connection",
        throttle_classes=[ScopedRateThrottle],
        throttle_scope="connection_test",
    )
    def test_connection(self, request: Request, pk: str | None = None) -> Response:
        """Check the service's /health (or a GET through the proxy) and record it."""
        return Response(connection.check_connection(self.get_object()).as_dict())


def _flag(request: Request, name: str) -> bool:
    """A boolean query flag as the schema types it: true/false/1/0 or absent; else 400."""
    try:
        return bool(strict_bool(request.query_params.get(name)))
    except DjangoValidationError as exc:
        raise exceptions.ValidationError({name: exc.messages}) from None


def _import_response(parsed: importers.Parsed, request: Request, apply: Any) -> Response:
    skip = _flag(request, "skip_invalid")
    # skip_invalid skips bad entries, never a body that is not the file's shape.
    whole_file = any("file" in error.errors for error in parsed.errors)
    if parsed.errors and (whole_file or not skip):
        raise exceptions.ValidationError({"entries": parsed.error_fields()})
    summary = apply(parsed.rows)
    return Response(
        {
            "created": summary.created,
            "updated": summary.updated,
            "skipped": len(parsed.errors),
            "errors": parsed.error_fields(),
        }
    )


IMPORT_PARAMS = [
    OpenApiParameter(
        "skip_invalid", OpenApiTypes.BOOL, description="Import the valid entries, skip the bad."
    )
]


# -- resources ----------------------------------------------------------------------


@extend_schema_view(bulk=extend_schema(request=bulk_request_schema(WorkerSerializer)))
class WorkerViewSet(ConnectionTestMixin, RegistryViewSet):
    """Workers: external services that open browser sessions."""

    queryset = Worker.objects.all()
    serializer_class = WorkerSerializer
    filterset_fields = [*SERVICE_FILTERS, "draining"]
    search_fields = ["name", "base_url"]
    ordering_fields = [*SERVICE_ORDERING, "max_sessions", "active_sessions"]


@extend_schema_view(bulk=extend_schema(request=bulk_request_schema(WriterSerializer)))
class WriterViewSet(ConnectionTestMixin, RegistryViewSet):
    """Writers: where extracted records go; setting is_default unsets the others."""

    queryset = Writer.objects.all()
    serializer_class = WriterSerializer
    filterset_fields = [*SERVICE_FILTERS, "is_default"]
    search_fields = ["name", "base_url"]
    ordering_fields = SERVICE_ORDERING


@extend_schema_view(bulk=extend_schema(request=bulk_request_schema(UploaderSerializer)))
class UploaderViewSet(ConnectionTestMixin, RegistryViewSet):
    """Uploaders (disabled by default, as in the seed)."""

    queryset = Uploader.objects.all()
    serializer_class = UploaderSerializer
    filterset_fields = SERVICE_FILTERS
    search_fields = ["name", "base_url"]
    ordering_fields = SERVICE_ORDERING


class ProxyFilter(StrictFilterSet):
    country = filters.CharFilter(field_name="country", lookup_expr="iexact")

    class Meta:
        model = Proxy
        fields = ["type", "scheme", "status", "enabled", "provider", "country"]


@extend_schema_view(bulk=extend_schema(request=bulk_request_schema(ProxySerializer)))
class ProxyViewSet(ConnectionTestMixin, RegistryViewSet):
    """Proxies; the password is write-only (see has_password and masked_url)."""

    queryset = Proxy.objects.all()
    serializer_class = ProxySerializer
    filterset_class = ProxyFilter
    search_fields = ["external_id", "host", "provider"]
    ordering_fields = [
        "external_id",
        "type",
        "country",
        "status",
        "last_used_at",
        "failure_count",
        "created_at",
    ]
    unique_field = "external_id"

    @extend_schema(
        parameters=IMPORT_PARAMS,
        request={
            "application/json": ProxyImportEntrySerializer(many=True),
            # A text/csv body is parsed too; documented through the file upload, whose
            # rule is the importer's (a body must be required for every documented type).
            "multipart/form-data": ProxyImportFileSerializer,
        },
        responses=RegistryImportResultSerializer,
        description="Upsert proxies by external id from proxies.json (a JSON array) or CSV "
        "(a multipart `file`, or a text/csv body); all or nothing unless ?skip_invalid=true. "
        "A JSON body follows the entry schema: an entry outside it makes the request "
        "malformed (400 whatever skip_invalid says), and one the schema calls valid is "
        "refused only for an `id` that appears more than once (skip_invalid skips it). A "
        "file upload may use every spelling of the file formats (`_id`, `server`, `geo`, "
        "snake_case), and skip_invalid skips any bad entry of it.",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[ProxyJSONParser, CSVTextParser, parsers.MultiPartParser],
    )
    def import_(self, request: Request) -> Response:
        """Upsert proxies by external id from proxies.json or CSV; all or nothing
        unless ?skip_invalid=true. Every path reads the file as a stream, twice."""
        skip = _flag(request, "skip_invalid")  # a 400 for a bad value, errors or not
        data = request.data
        if "file" in getattr(request, "FILES", {}):
            upload = request.FILES["file"]
            if upload.size is not None and upload.size > importers.max_bytes():
                raise refusal(streams.too_large(importers.max_bytes()))
            proxy_file = importers.ProxyFile.open(upload.open("rb"), upload.name or "")
        elif isinstance(data, importers.ProxyFile):
            proxy_file = data
        elif hasattr(data, "getlist"):  # multipart without a file
            raise exceptions.ValidationError({"file": "Upload a JSON or CSV file."})
        else:  # an empty body
            raise exceptions.ValidationError({"entries": {"0": {"file": "is empty."}}})
        with proxy_file:
            try:
                checked = proxy_file.check()
                if checked.unskippable or (checked.error_count and not skip):
                    raise exceptions.ValidationError({"entries": checked.error_fields()})
                summary = proxy_file.apply(total=checked.valid)
            except importers.FileRefused as exc:
                raise refusal(exc) from None
        return Response(
            {
                "created": summary.created,
                "updated": summary.updated,
                "skipped": checked.error_count,
                "errors": checked.error_fields(),
            }
        )


@extend_schema_view(bulk=extend_schema(request=bulk_request_schema(SiteConfigSerializer)))
class SiteConfigViewSet(RegistryViewSet):
    """Proxy strategy per domain (`*` is the default)."""

    queryset = SiteConfig.objects.all()
    serializer_class = SiteConfigSerializer
    filterset_fields = ["enabled", "engine", "domain"]
    search_fields = ["domain"]
    ordering_fields = ["domain", "max_sessions", "items_per_job", "created_at"]
    unique_field = "domain"

    @extend_schema(
        parameters=IMPORT_PARAMS,
        request={"application/json": {"type": "object"}},
        responses=RegistryImportResultSerializer,
    )
    @action(
        detail=False, methods=["post"], url_path="import", parser_classes=[hardening.JSONParser]
    )
    def import_(self, request: Request) -> Response:
        """Upsert site configs by domain from proxy-strategies.json (`default` is `*`)."""
        parsed = importers.parse_strategies(request.data)
        return _import_response(parsed, request, importers.apply_strategies)


# -- config -------------------------------------------------------------------------


class ConfigViewSet(viewsets.ViewSet):
    """Typed config keys: defaults in code, overrides stored. Writes need admin."""

    lookup_field = "key"
    lookup_value_regex = r"[A-Za-z0-9_.-]+"
    serializer_class = ConfigKeySerializer

    @staticmethod
    def _spec(key: str) -> config.ConfigKey:
        spec = config.KEYS.get(key)
        if spec is None:
            raise exceptions.NotFound(f"Unknown config key {key!r}.")
        return spec

    @staticmethod
    def _row(spec: config.ConfigKey) -> dict[str, Any]:
        stored = dict(ConfigEntry.objects.filter(key=spec.key).values_list("key", "value"))
        return ConfigKeySerializer.row(spec, stored)

    @extend_schema(responses=ConfigKeySerializer(many=True))
    def list(self, request: Request) -> Response:
        stored = dict(ConfigEntry.objects.values_list("key", "value"))
        return Response([ConfigKeySerializer.row(spec, stored) for spec in config.KEYS.values()])

    @extend_schema(responses=ConfigKeySerializer)
    def retrieve(self, request: Request, key: str) -> Response:
        return Response(self._row(self._spec(key)))

    # `value` is the only field, so a PATCH needs it as much as a PUT does.
    @extend_schema(
        request={
            "application/json": {
                "type": "object",
                "properties": {"value": {}},
                "required": ["value"],
            }
        },
        responses=ConfigKeySerializer,
    )
    def partial_update(self, request: Request, key: str) -> Response:
        spec = self._spec(key)
        body = ConfigValueSerializer(data=request.data, context={"spec": spec})
        body.is_valid(raise_exception=True)
        config.set_value(key, body.validated_data["value"])
        return Response(self._row(spec))

    @extend_schema(request=ConfigValueSerializer, responses=ConfigKeySerializer)
    def update(self, request: Request, key: str) -> Response:
        return self.partial_update(request, key)

    @extend_schema(request=None, responses=ConfigKeySerializer)
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, key: str) -> Response:
        spec = self._spec(key)
        config.reset(key)
        return Response(self._row(spec), status=status.HTTP_200_OK)
