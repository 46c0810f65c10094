"""Serializers of the registry API. They validate; views stay thin.

Secrets (`api_key`, proxy `password`) are write-only: responses carry `has_api_key`,
`has_password` and the proxy's `masked_url` instead.
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.serializers import PolymorphicProxySerializerExtension
from drf_spectacular.utils import Direction, PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken import serializers as authtoken_serializers

from mission_control import strict_json
from mission_control.logging import redact
from registry import config, site_rules
from registry.models import (
    DEFAULT_DOMAIN,
    ApiToken,
    Proxy,
    ProxyScheme,
    ProxyType,
    Service,
    SiteConfig,
    Uploader,
    Worker,
    WorkerProvider,
    Writer,
    normalize_domain,
)

COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")

# What the OpenAPI schema promises about free-text fields. Most patterns describe a
# subset of what the validators accept (they normalize case, `www.`, brackets and so
# on), so that a request the schema calls valid is never refused for its shape.
_SCHEMA_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# At most four labels: a host derived from a URL must stay within 253 characters.
DOMAIN_PATTERN = rf"^(?:{_SCHEMA_LABEL}\.){{0,3}}{_SCHEMA_LABEL}$"
# Mission URLs (actions.clean_urls). Django's URLValidator wants a letters-only
# top-level domain.
HTTP_URL_PATTERN = (
    rf"^https?://(?:{_SCHEMA_LABEL}\.){{1,3}}[a-z]{{2,12}}(?::[1-9][0-9]{{0,3}})?"
    r"(?:/[A-Za-z0-9._~%/-]{0,200})?$"
)

# The grammars below are exact: the validator accepts a value if and only if it
# matches (`exact_match`), so the schema states the rule itself. Whitespace around a
# host is allowed and dropped (spelled out: `\s` reads differently across engines);
# around a URL it is refused (`format: uri` has no whitespace).
_AROUND = r"[ \t\n\r]*"
_LABEL_ANY_CASE = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,59}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# RFC 3986 path and query characters; `%` only as an escape. No fragment, no userinfo.
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_PATH_QUERY = rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?"
# A service (worker, writer, uploader): a host name of one or more labels (http://worker:8000
# on a private network) or an IPv4 address; port 1-65535.
SERVICE_URL_GRAMMAR = (
    rf"https?://(?:{_LABEL_ANY_CASE}\.)*{_LABEL_ANY_CASE}(?::{_PORT})?{_PATH_QUERY}"
)
# A webhook receiver: a name (Django's URLValidator: a letters-only top-level domain,
# at most 253 characters) or an IPv4 address; the outbound policy then refuses
# internal addresses unless allowed (OUTBOUND_* settings).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
WEBHOOK_URL_GRAMMAR = (
    rf"https?://(?:(?:{_LABEL_ANY_CASE}\.){{1,3}}[A-Za-z]{{2,63}}|{_OCTET}(?:\.{_OCTET}){{3}})"
    rf"(?::{_PORT})?{_PATH_QUERY}"
)
# A proxy host: a name or IPv4 address, or an IPv6 address (brackets optional).
HOST_GRAMMAR = rf"(?:{_LABEL_ANY_CASE}\.)*{_LABEL_ANY_CASE}|\[[0-9A-Fa-f:.]{{2,45}}\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"


# URLs take no whitespace around them: `format: uri` has none.
_NO_AROUND = {SERVICE_URL_GRAMMAR, WEBHOOK_URL_GRAMMAR}


def exact_pattern(grammar: str) -> str:
    """The schema's pattern of a value that must match `grammar`."""
    around = "" if grammar in _NO_AROUND else _AROUND
    return rf"^{around}(?:{grammar}){around}$"


def exact_match(grammar: str, value: Any) -> str | None:
    """`value` without the whitespace around it if it matches `grammar`, else None."""
    if not isinstance(value, str) or re.fullmatch(exact_pattern(grammar)[1:-1], value) is None:
        return None
    return value.strip(" \t\n\r")


SERVICE_URL_PATTERN = exact_pattern(SERVICE_URL_GRAMMAR)
WEBHOOK_URL_PATTERN = exact_pattern(WEBHOOK_URL_GRAMMAR)
HOST_PATTERN = exact_pattern(HOST_GRAMMAR)
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
# Text that survives DRF's CharField: no NUL, something left after stripping.
TEXT_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"
NO_NUL_PATTERN = r"^[^\x00]*$"


class RequestSchema:
    """A field whose request schema is `request_schema`: what a client may send and
    is sure to have accepted (patterns narrower than the validators). Responses keep
    the plain field's schema (`response_schema` if set): stored rows predate these
    promises, or came from the admin, imports or the seed (IP hosts, query strings)."""

    request_schema: ClassVar[dict[str, Any]] = {}
    response_schema: ClassVar[dict[str, Any] | None] = None


class RequestSchemaExtension(OpenApiSerializerFieldExtension):
    target_class = RequestSchema
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> Any:
        field = self.target
        if direction == "request":
            return copy.deepcopy(field.request_schema)
        if field.response_schema is not None:
            return copy.deepcopy(field.response_schema)
        return auto_schema._map_serializer_field(field, direction, bypass_extensions=True)


class DomainField(RequestSchema, strict_json.CharField):
    """A host name (documented lowercase, without `www.`; the validator normalizes)."""

    request_schema: ClassVar = {"type": "string", "pattern": DOMAIN_PATTERN, "maxLength": 253}


class HttpUrlField(RequestSchema, strict_json.CharField):
    """A service's absolute http(s) URL: exactly SERVICE_URL_GRAMMAR (`clean_base_url`)."""

    request_schema: ClassVar = {
        "type": "string",
        "format": "uri",
        "pattern": SERVICE_URL_PATTERN,
        "maxLength": 500,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)  # the grammar says what is trimmed


class HostField(RequestSchema, strict_json.CharField):
    """A proxy host: exactly HOST_GRAMMAR (stored without IPv6 brackets)."""

    request_schema: ClassVar = {"type": "string", "pattern": HOST_PATTERN, "maxLength": 255}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)


def clean_host(value: Any) -> str:
    """A proxy host as HOST_GRAMMAR has it, without brackets; raises ValueError otherwise."""
    host = exact_match(HOST_GRAMMAR, value)
    if host is None:
        raise ValueError("Enter a host name or IP address.")
    return host.strip("[]")


class CountryField(RequestSchema, strict_json.CharField):
    """An ISO 3166 alpha-2 code (any case; stored uppercase)."""

    request_schema: ClassVar = {"type": "string", "pattern": COUNTRY_PATTERN}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)


SERVICE_READ_ONLY = (
    "health_status",
    "version",
    "consecutive_failures",
    "circuit_open_until",
    "last_seen_at",
    "last_checked_at",
    "last_latency_ms",
    "last_error",
    "created_at",
    "updated_at",
)


def clean_country(value: str) -> str:
    """An ISO 3166 alpha-2 code, uppercased; raises ValueError otherwise."""
    if not isinstance(value, str) or not COUNTRY_RE.fullmatch(value.strip()):
        raise ValueError(f"{value!r} is not a two-letter ISO 3166 country code.")
    return value.strip().upper()


def clean_base_url(value: str) -> str:
    """An http(s) URL with a host; single-label hosts (http://worker:8000) are fine,
    as services often live on a private network. Exactly SERVICE_URL_GRAMMAR (what the
    schema states); the checks below stay as a second line. Raises ValueError otherwise."""
    exact = exact_match(SERVICE_URL_GRAMMAR, value)
    if exact is None:
        raise ValueError(
            "Enter an http(s) URL with a host name or IPv4 address, an optional port and "
            "path, e.g. http://worker:8000/api/v1 (no credentials, no fragment)."
        )
    value = exact
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("Only http and https URLs are allowed.")
    if not parts.hostname or any(c.isspace() for c in value) or parts.fragment:
        raise ValueError("Enter a valid URL with a host, e.g. http://worker:8000/api/v1.")
    if parts.username or parts.password:
        raise ValueError("No credentials inside the URL: put the key in api_key.")
    return value.rstrip("/")


class StrictCharField(strict_json.CharField):
    """A CharField that refuses numbers instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextField(strict_json.CharField):
    """A CharField whose request schema also rules out what DRF refuses besides the
    length: NUL characters, and (blank not allowed) text that strips to nothing."""


class TextFieldExtension(OpenApiSerializerFieldExtension):
    target_class = TextField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> Any:
        field = self.target
        schema = auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        if direction == "request":
            # With allow_blank the generator adds `oneOf: [..., ""]`, hence `+`.
            schema["pattern"] = r"^[^\x00]+$" if field.allow_blank else TEXT_PATTERN
        return schema


# Model CharFields of the registry serializers become TextFields (keeping their
# validators, e.g. the unique name's).
TEXT_FIELD_MAPPING = {
    **strict_json.ModelSerializer.serializer_field_mapping,
    models.CharField: TextField,
}


class CountryCodeField(RequestSchema, StrictCharField):
    """A country code inside a list (strings only): two letters, any case."""

    request_schema: ClassVar = {"type": "string", "pattern": COUNTRY_PATTERN}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not COUNTRY_RE.fullmatch(value):
            raise serializers.ValidationError(
                f"{value!r} is not a two-letter ISO 3166 country code."
            )
        return value


class ProxyIdField(RequestSchema, StrictCharField):
    """A proxy's external id inside a list."""

    request_schema: ClassVar = {"type": "string", "pattern": TEXT_PATTERN, "maxLength": 100}


class SelectorField(RequestSchema, StrictCharField):
    """A CSS selector (a value of `selectors`)."""

    request_schema: ClassVar = {"type": "string", "pattern": TEXT_PATTERN, "maxLength": 1000}


class QualityRulesField(RequestSchema, serializers.JSONField):
    """`quality_rules` as `registry.quality_rules.Rules.parse` accepts it."""

    request_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            # null means "not set", as registry/quality_rules.py reads it.
            "min_success_ratio": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
            "required_fields": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "nullable": True,
            },
            "required_fields_min_pct": {
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "nullable": True,
            },
            "min_records_pct_of_recent": {
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "nullable": True,
            },
            "recent_missions": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        "description": "Quality gate rules (see registry/quality_rules.py); {} means none.",
    }
    response_schema: ClassVar = {"type": "object", "additionalProperties": {}}


class HeadersField(RequestSchema, serializers.JSONField):
    """`headers` as `site_rules.clean_headers` accepts them: at most 30, token names,
    string values of at most 2000 characters without control characters."""

    request_schema: ClassVar = {
        "type": "object",
        "maxProperties": 30,
        # OpenAPI 3.0 has no `propertyNames`: the names' rule (HTTP tokens of at most
        # 100 characters) is in the description.
        "additionalProperties": {
            "type": "string",
            "maxLength": 2000,
            # `$(?!\n)`: the end of the text, in Python's reading of `$` too.
            "pattern": r"^[^\x00-\x1f]*$(?!\n)",
        },
        "description": 'Extra request headers, e.g. {"Accept-Language": "pt-BR"}: at most '
        "30; each name an HTTP token (letters, digits, !#$%&'*+.^_`|~-) of at most 100 "
        "characters, each value text of at most 2000 characters without control characters.",
    }
    response_schema: ClassVar = {"type": "object", "additionalProperties": {"type": "string"}}


def clean_domain(value: str) -> str:
    """`*` or a host name without `www.`, lowercased; raises ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError("Domain must be a string.")
    if value.strip() == DEFAULT_DOMAIN:
        return DEFAULT_DOMAIN
    domain = normalize_domain(value)
    if len(domain) > 253 or not DOMAIN_RE.match(domain):
        raise ValueError(f"{value!r} is not a domain name (e.g. loja.com.br) or '*'.")
    return domain


class ServiceSerializer(strict_json.ModelSerializer):
    serializer_field_mapping = TEXT_FIELD_MAPPING

    api_key = TextField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text="Write-only. Send an empty string to remove it.",
    )
    has_api_key = strict_json.BooleanField(read_only=True)
    base_url = HttpUrlField(
        max_length=500,
        help_text="Changing it on a service that has an API key needs `api_key` too "
        "(400 otherwise): a key must not follow the service to a new host.",
    )

    class Meta:
        model: type[Service]
        fields = [
            "id",
            "name",
            "base_url",
            "api_key",
            "has_api_key",
            "enabled",
            *SERVICE_READ_ONLY,
        ]
        read_only_fields: tuple[str, ...] = SERVICE_READ_ONLY
        extra_kwargs: dict[str, Any] = {
            "name": {"help_text": "Unique; a name already taken is refused with 400."}
        }

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        # Rows from before credentials were refused: never shown, to anyone.
        data["base_url"] = redact(data.get("base_url") or "")
        return data

    def validate_base_url(self, value: str) -> str:
        try:
            return clean_base_url(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance
        if (
            instance is not None
            and "base_url" in attrs
            and attrs["base_url"] != instance.base_url
            and instance.api_key
            and "api_key" not in attrs
        ):
            # A key sent to a new host is a leaked key: make the operator re-enter it.
            raise serializers.ValidationError(
                {"api_key": "Re-enter the API key when changing base_url (or send '' to drop it)."}
            )
        return attrs


class WorkerSerializer(ServiceSerializer):
    providers = serializers.ListField(
        child=strict_json.ChoiceField(choices=WorkerProvider.choices),
        required=False,
        max_length=len(WorkerProvider.choices),
    )

    class Meta(ServiceSerializer.Meta):
        model = Worker
        fields = [
            *ServiceSerializer.Meta.fields,
            "providers",
            "max_sessions",
            "draining",
            "active_sessions",
            "reported_active_sessions",
            "reported_max_sessions",
        ]
        read_only_fields = (
            *SERVICE_READ_ONLY,
            "active_sessions",
            "reported_active_sessions",
            "reported_max_sessions",
        )

    def validate_providers(self, value: list[str]) -> list[str]:
        return sorted(set(value))


class WriterSerializer(ServiceSerializer):
    class Meta(ServiceSerializer.Meta):
        model = Writer
        fields = [*ServiceSerializer.Meta.fields, "is_default", "max_batch_records"]
        # The one-default constraint is kept by save(), which unsets the others.
        extra_kwargs: dict[str, Any] = {
            **ServiceSerializer.Meta.extra_kwargs,
            "is_default": {"validators": []},
        }

    def save(self, **kwargs: Any) -> Any:
        # One default writer: unset the others in the same transaction.
        with transaction.atomic():
            if self.validated_data.get("is_default"):
                (self.instance or Writer()).other_defaults().update(is_default=False)
            return super().save(**kwargs)


class UploaderSerializer(ServiceSerializer):
    class Meta(ServiceSerializer.Meta):
        model = Uploader


PROXY_READ_ONLY = (
    "masked_url",
    "has_password",
    "active_sessions",
    "success_count",
    "failure_count",
    "last_used_at",
    "cooldown_until",
    "last_error",
    "last_checked_at",
    "last_latency_ms",
    "exit_ip",
    "exit_country",
    "geo_checked_at",
    "geo_mismatch",
    "geo_verified",
    "created_at",
    "updated_at",
)


class ProxySerializer(strict_json.ModelSerializer):
    serializer_field_mapping = TEXT_FIELD_MAPPING

    password = TextField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=255,
        style={"input_type": "password"},
        help_text="Write-only. Send an empty string to remove it.",
    )
    has_password = strict_json.BooleanField(read_only=True)
    masked_url = strict_json.CharField(read_only=True)
    geo_verified = strict_json.BooleanField(
        read_only=True, help_text="The last connection test saw the declared country."
    )
    host = HostField(max_length=255)
    country = CountryField(
        max_length=2, required=False, allow_blank=True, help_text="ISO 3166 alpha-2"
    )

    class Meta:
        model = Proxy
        fields = [
            "id",
            "external_id",
            "type",
            "scheme",
            "host",
            "port",
            "username",
            "password",
            "country",
            "provider",
            "enabled",
            "status",
            "max_sessions",
            *PROXY_READ_ONLY,
        ]
        read_only_fields = PROXY_READ_ONLY
        extra_kwargs: dict[str, Any] = {
            "external_id": {"help_text": "Unique; an id already taken is refused with 400."}
        }

    def validate_country(self, value: str) -> str:
        if not value:
            return ""
        try:
            return clean_country(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_host(self, value: str) -> str:
        try:
            return clean_host(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance
        moved = instance is not None and any(
            name in attrs and attrs[name] != getattr(instance, name)
            for name in PROXY_ADDRESS_FIELDS
        )
        if moved and instance is not None and instance.password and "password" not in attrs:
            # A password sent to a new address is a leaked password: re-enter it.
            raise serializers.ValidationError(
                {
                    "password": "Re-enter the password when changing scheme, host, port or "
                    "username (or send '' to drop it)."
                }
            )
        return super().validate(attrs)


PROXY_ADDRESS_FIELDS = ("scheme", "host", "port", "username")


@extend_schema_field({"type": "string", "enum": ProxyType.values})
class ProxyTypeChoiceField(strict_json.ChoiceField):
    """A proxy type inside a list; documented inline so the enum keeps one name."""

    def __init__(self, **kwargs: Any):
        super().__init__(choices=ProxyType.choices, **kwargs)


class SiteDomainField(RequestSchema, strict_json.CharField):
    """A site config's domain: a host name or `*` (the default config)."""

    request_schema: ClassVar = {
        "type": "string",
        "pattern": rf"^\*$|{DOMAIN_PATTERN}",
        "maxLength": 253,
    }


class SiteConfigSerializer(strict_json.ModelSerializer):
    domain = SiteDomainField(
        max_length=253,
        help_text="A domain without www. (normalized), or * for the default. Unique: a "
        "domain that already has a config is refused with 400.",
    )
    # Every setting is optional: null (or absent) inherits from the parent domain's
    # rule, then from `*`, field by field; [] is a value ("any"), not "inherit".
    proxy_types = serializers.ListField(
        child=ProxyTypeChoiceField(), required=False, allow_null=True, max_length=10
    )
    countries = serializers.ListField(
        child=CountryCodeField(max_length=2, min_length=2),
        required=False,
        allow_null=True,
        max_length=300,
    )
    blocked_proxies = serializers.ListField(
        child=ProxyIdField(max_length=100), required=False, allow_null=True, max_length=10_000
    )
    selectors = serializers.DictField(
        child=SelectorField(max_length=1000, allow_blank=False), required=False, allow_null=True
    )
    quality_rules = QualityRulesField(required=False, allow_null=True)
    headers = HeadersField(required=False, allow_null=True)
    providers = serializers.ListField(
        child=strict_json.ChoiceField(choices=[*WorkerProvider.choices, ("*", "any")]),
        required=False,
        allow_null=True,
        max_length=len(WorkerProvider.choices) + 1,
        help_text='Browser providers the site may use, first choice first; [] or ["*"]: any.',
    )

    class Meta:
        model = SiteConfig
        fields = [
            "id",
            "domain",
            "proxy_types",
            "countries",
            "blocked_proxies",
            "max_sessions",
            "items_per_job",
            "job_timeout_s",
            "session_timeout_s",
            "engine",
            "providers",
            "selectors",
            "quality_rules",
            "require_verified_geo",
            "max_concurrent_sessions",
            "min_delay_ms",
            "max_requests_per_minute",
            "respect_robots",
            "user_agent",
            "headers",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ("created_at", "updated_at")

    def validate_headers(self, value: Any) -> dict[str, str] | None:
        try:
            return site_rules.clean_headers(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_domain(self, value: str) -> str:
        try:
            domain = clean_domain(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        clash = SiteConfig.objects.filter(domain=domain)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"A site config for {domain!r} already exists.")
        return domain

    # None: the setting inherits (parent domain, then `*`); kept as None.

    def validate_proxy_types(self, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted(set(value))

    def validate_countries(self, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return sorted({clean_country(c) for c in value})
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_blocked_proxies(self, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({v.strip() for v in value if v.strip()})

    def validate_quality_rules(self, value: Any) -> Any:
        from django.core.exceptions import ValidationError as DjangoValidationError

        from registry.quality_rules import Rules

        if value is None:
            return None
        try:
            Rules.parse(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value


MAX_BULK_ITEMS = 1000
MAX_ID = 2**63 - 1
BULK_DESCRIPTION = (
    "Create, update, delete, enable or disable up to 1000 rows, all or nothing. `create` "
    "items are the resource's create body; `update` items its partial body plus `id`. "
    "Every entry is validated first; errors come by index. A schema-valid request is "
    "refused (400) only for a conflict: an id that does not exist, a unique value already "
    "taken or listed twice in the batch, a second writer that sets `is_default`."
)


class RegistryBulkIdsSerializer(serializers.Serializer):
    action = strict_json.ChoiceField(choices=["delete", "enable", "disable"])
    ids = serializers.ListField(
        child=strict_json.IntegerField(min_value=1, max_value=MAX_ID),
        min_length=1,
        max_length=MAX_BULK_ITEMS,
    )


class RegistryBulkItemsSerializer(serializers.Serializer):
    """Items are validated one by one by the resource's serializer (`run_bulk`), so
    that errors come by index; `bulk_request_schema` documents their shape."""

    action = strict_json.ChoiceField(choices=["create", "update"])
    items = serializers.ListField(
        child=serializers.DictField(), max_length=MAX_BULK_ITEMS, allow_empty=False
    )


class RegistryBulkSerializer(serializers.Serializer):
    """`{"action": "create"|"update", "items": [...]}` or
    `{"action": "delete"|"enable"|"disable", "ids": [...]}`: only the part the action
    names is read."""

    WITH_ITEMS = ("create", "update")

    action = strict_json.ChoiceField(choices=["create", "update", "delete", "enable", "disable"])

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        act = super().to_internal_value(data)["action"]
        body: serializers.Serializer = (
            RegistryBulkItemsSerializer(data=data)
            if act in self.WITH_ITEMS
            else RegistryBulkIdsSerializer(data=data)
        )
        if not body.is_valid():
            raise serializers.ValidationError(body.errors)
        return dict(body.validated_data)


class BulkItemsField(serializers.ListField):
    """Schema only (`BulkItemsExtension`): 1 to MAX_BULK_ITEMS items, each the
    resource's create body, or with `update` its partial body plus a required `id`."""

    def __init__(self, resource: type[serializers.Serializer], update: bool = False) -> None:
        self.resource, self.update = resource, update
        super().__init__(max_length=MAX_BULK_ITEMS, allow_empty=False)


class BulkItemsExtension(OpenApiSerializerFieldExtension):
    target_class = BulkItemsField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> Any:
        field = self.target
        body = auto_schema.resolve_serializer(field.resource(partial=field.update), direction)
        item: dict[str, Any] = body.ref
        if field.update:
            item = {
                "allOf": [
                    body.ref,
                    {
                        "type": "object",
                        "properties": {"id": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
                        "required": ["id"],
                    },
                ]
            }
        return {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_BULK_ITEMS}


def _action(value: str, what: str) -> strict_json.ChoiceField:
    # The label makes each component's one-value enum a choice set of its own, so
    # postprocess_schema_enums names it after the component instead of colliding.
    return strict_json.ChoiceField(choices=[(value, f"{value} {what}")])


def bulk_request_schema(resource: type[strict_json.ModelSerializer]) -> ActionBodySerializer:
    """The bulk body of one resource, for the schema: a `oneOf` by `action` whose
    `create` items are the resource's create body and `update` items its partial body
    with a required `id` (RegistryBulkSerializer and `run_bulk` validate the same)."""
    model: type[models.Model] = resource.Meta.model
    name, plural = model.__name__, str(model._meta.verbose_name_plural)

    class Create(serializers.Serializer):
        action = _action("create", plural)
        items = BulkItemsField(resource, update=False)

    class Update(serializers.Serializer):
        action = _action("update", plural)
        items = BulkItemsField(resource, update=True)

    Create.__name__ = Create.__qualname__ = f"{name}BulkCreateSerializer"
    Update.__name__ = Update.__qualname__ = f"{name}BulkUpdateSerializer"
    return ActionBodySerializer(
        component_name=f"{name}Bulk",
        serializers={
            "create": Create,
            "update": Update,
            "delete": RegistryBulkIdsSerializer,
            "enable": RegistryBulkIdsSerializer,
            "disable": RegistryBulkIdsSerializer,
        },
        resource_type_field_name="action",
    )


# An entry of the JSON body of POST /api/proxies/import/ as the schema states it (the
# entries parse_proxy is sure to accept; see ProxyImportEntryExtension).
PROXY_IMPORT_ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": TEXT_PATTERN, "maxLength": 100},
        "type": {"type": "string", "enum": list(ProxyType.values)},
        "scheme": {"type": "string", "enum": list(ProxyScheme.values)},
        "host": {"type": "string", "pattern": HOST_PATTERN, "maxLength": 255},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "username": {"type": "string", "pattern": NO_NUL_PATTERN, "maxLength": 255},
        "password": {"type": "string", "pattern": NO_NUL_PATTERN, "maxLength": 255},
        "country": {"type": "string", "pattern": COUNTRY_PATTERN},
        "provider": {"type": "string", "pattern": NO_NUL_PATTERN, "maxLength": 100},
        "maxSessions": {"type": "integer", "minimum": 1, "maximum": 1000},
        "enabled": {"type": "boolean"},
    },
    "required": ["id", "type", "host", "port"],
    "additionalProperties": False,
}


class ProxyImportEntrySerializer(serializers.Serializer):
    """Schema only (ProxyImportEntryExtension): a proxies.json entry of the JSON body
    of POST /api/proxies/import/, validated by importers.parse_proxy."""


class ProxyImportEntryExtension(OpenApiSerializerExtension):
    """The entries parse_proxy is sure to accept (it also reads `_id`, `geo`, `server`
    and other spellings, which a file upload may use). Closed, so that no other key can
    change an entry's meaning."""

    target_class = ProxyImportEntrySerializer

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> Any:
        def choices(pairs: list[tuple[str, str]], what: str) -> Any:
            # Labels of their own: postprocess_schema_enums then names these choice sets
            # after this component instead of colliding with the model's.
            field = strict_json.ChoiceField(choices=[(v, f"{label} {what}") for v, label in pairs])
            return auto_schema._map_serializer_field(field, direction)

        schema = copy.deepcopy(PROXY_IMPORT_ENTRY_SCHEMA)
        schema["properties"]["type"] = choices(ProxyType.choices, "proxy")
        schema["properties"]["scheme"] = choices(ProxyScheme.choices, "scheme")
        return schema


class ProxyImportFileSerializer(serializers.Serializer):
    """Schema only: a proxies file upload for POST /api/proxies/import/."""

    file = serializers.FileField(
        help_text="proxies.json, or CSV with the header id,type,scheme,host,port,username,"
        "password,country,provider,max_sessions,enabled,server (any order; id, type and "
        "host+port or server required)."
    )


class ActionBodySerializer(PolymorphicProxySerializer):
    """A PolymorphicProxySerializer whose body is required: it always names its
    discriminator (drf-spectacular cannot see a `required` inside a `oneOf`)."""


class ActionBodyExtension(PolymorphicProxySerializerExtension):
    target_class = "registry.serializers.ActionBodySerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> Any:
        schema = super().map_serializer(auto_schema, direction)
        return {**schema, "required": [self.target.resource_type_field_name]}


class RegistryBulkResultSerializer(serializers.Serializer):
    action = strict_json.CharField()
    count = strict_json.IntegerField()
    ids = serializers.ListField(child=strict_json.IntegerField())


class RegistryImportResultSerializer(serializers.Serializer):
    created = strict_json.IntegerField()
    updated = strict_json.IntegerField()
    skipped = strict_json.IntegerField()
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.DictField(child=strict_json.CharField()),
        help_text="Invalid entries by index (only with ?skip_invalid=true).",
    )


class ConnectionTestResultSerializer(serializers.Serializer):
    ok = strict_json.BooleanField()
    status_class = strict_json.CharField(allow_null=True)
    latency_ms = strict_json.IntegerField(allow_null=True)
    error = strict_json.CharField(required=False)


class ApiTokenSerializer(strict_json.ModelSerializer):
    """A token of the user, never its key or hash: the prefix names it."""

    live = serializers.SerializerMethodField(help_text="Neither revoked nor expired.")

    class Meta:
        model = ApiToken
        fields = ["id", "prefix", "created_at", "expires_at", "revoked_at", "live"]
        read_only_fields = fields

    def get_live(self, token: ApiToken) -> bool:
        if token.revoked_at is not None:
            return False
        return token.expires_at is None or token.expires_at > timezone.now()


class AuthTokenSerializer(authtoken_serializers.AuthTokenSerializer):
    """DRF's login body (same names, labels and options) with strict fields."""

    username = strict_json.CharField(label=_("Username"), write_only=True)
    password = strict_json.CharField(
        label=_("Password"),
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
    )
    token = strict_json.CharField(label=_("Token"), read_only=True)


class TokenResponseSerializer(serializers.Serializer):
    token = strict_json.CharField(
        help_text="Shown once; send it as `Authorization: Token <token>`."
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When the token stops working (null: never)."
    )


class ConfigKeySerializer(serializers.Serializer):
    key = strict_json.CharField(read_only=True)
    value = serializers.JSONField()
    default = serializers.JSONField(read_only=True)
    type = strict_json.CharField(read_only=True)
    description = strict_json.CharField(read_only=True)
    min_value = strict_json.FloatField(read_only=True, allow_null=True)
    max_value = strict_json.FloatField(read_only=True, allow_null=True)
    is_default = strict_json.BooleanField(read_only=True)

    @staticmethod
    def row(spec: config.ConfigKey, stored: dict[str, Any]) -> dict[str, Any]:
        is_default = spec.key not in stored
        value = spec.default
        if not is_default:
            try:
                value = spec.clean(stored[spec.key])
            except DjangoValidationError:  # a bad stored value reads as the default
                value, is_default = spec.default, True
        return {
            "key": spec.key,
            "value": value,
            "default": spec.default,
            "type": spec.type_name,
            "description": spec.description,
            "min_value": spec.min_value,
            "max_value": spec.max_value,
            "is_default": is_default,
        }


class ConfigValueSerializer(serializers.Serializer):
    value = serializers.JSONField()

    def validate_value(self, value: Any) -> Any:
        spec: config.ConfigKey = self.context["spec"]
        try:
            return spec.clean(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
