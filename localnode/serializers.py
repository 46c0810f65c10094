"""The built-in node's request validation, as DRF serializers.

The contracts (docs/contracts/worker-api.md, writer-api.md) want strict JSON: a string
is a string (42 is not a session key), a boolean is not a number, and a 422 names each
bad field by its path (`items[3].url`, `proxy.country`, `records[1].data`) with one short
reason. DRF coerces by default and nests its errors, so the fields here are strict
(`Strict`: the JSON type first, then one message for every built-in failure) and
`flat_errors` turns DRF's nested errors into those paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from localnode.http import BATCH_KEY_RE, KEY_RE
from mission_control import strict_json

MAX_JOB_ITEMS = 1000
MAX_ITEM_ERRORS = 20  # enough to say what is wrong with a job's items


def _must(test: Callable[[Any], bool], message: str) -> Callable[[Any], None]:
    """A validator: `message` unless `test(value)`."""

    def check(value: Any) -> None:
        if not test(value):
            raise serializers.ValidationError(message)

    return check


def _full(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: bool(pattern.fullmatch(value))


class Strict:
    """No coercion and one message: a value of another JSON type than `json_types`
    fails with `message` (booleans are never numbers), and so does every built-in check
    (required, null, blank, lengths, bounds). `or_default`: a falsy value stands for the
    default (the contracts' `x or default` fields). Validators keep their own messages."""

    json_types: ClassVar[tuple[type, ...]] = ()
    error_messages: dict[str, Any]

    def __init__(self, *args: Any, message: Any, or_default: Any = empty, **kwargs: Any) -> None:
        self.message = message
        self.or_default = or_default
        own = list(kwargs.get("validators", ()))
        super().__init__(*args, **kwargs)
        if isinstance(message, str):
            self.error_messages = dict.fromkeys(self.error_messages, message)
            # The bounds DRF turned into validators (min/max value and length).
            for validator in self.validators:  # type: ignore[attr-defined]
                if validator not in own and hasattr(validator, "message"):
                    validator.message = message

    def run_validation(self, data: Any = empty) -> Any:
        if self.or_default is not empty and (data is empty or not data):
            return self.or_default
        wrong_type = not strict_json.is_json_type(data, self.json_types)
        if data is not empty and data is not None and wrong_type:
            raise serializers.ValidationError(self.message)
        return super().run_validation(data)  # type: ignore[misc]


class Text(Strict, strict_json.CharField):
    json_types = (str,)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class Integer(Strict, strict_json.IntegerField):
    json_types = (int,)


class Number(Strict, strict_json.FloatField):
    json_types = (int, float)


class Boolean(Strict, strict_json.BooleanField):
    json_types = (bool,)


class Strings(Strict, serializers.DictField):
    """An object of string values; any bad entry fails the whole field."""

    json_types = (dict,)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=strict_json.CharField(trim_whitespace=False, allow_blank=True), **kwargs
        )

    def run_validation(self, data: Any = empty) -> Any:
        if isinstance(data, dict) and not all(isinstance(v, str) for v in data.values()):
            raise serializers.ValidationError(self.message)
        return super().run_validation(data)


class AnyList(Strict, serializers.ListField):
    json_types = (list,)


class AnyObject(Strict, serializers.DictField):
    json_types = (dict,)


class Object(Strict, serializers.Serializer):
    """A nested object: not an object fails with `message` (a string, or a dict to
    name a subfield); its own fields report under its path."""

    json_types = (dict,)

    def run_validation(self, data: Any = empty) -> Any:
        absent_ok = (data is empty and not self.required) or (data is None and self.allow_null)
        falsy_ok = self.or_default is not empty and not data
        if not (absent_ok or falsy_ok or isinstance(data, dict)):
            raise serializers.ValidationError(self.message)
        return super().run_validation(data)


def flat_errors(detail: Any, prefix: str = "") -> dict[str, str]:
    """DRF's nested errors as {contract path: first reason}: `a.b`, `items[3].url`."""
    if isinstance(detail, dict):
        out: dict[str, str] = {}
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                name = prefix or str(key)
            elif isinstance(key, int):
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flat_errors(value, name))
        return out
    if isinstance(detail, list):
        if all(isinstance(d, str) for d in detail):
            return {prefix: str(detail[0])} if detail else {}
        out = {}
        for index, value in enumerate(detail):
            out.update(flat_errors(value, f"{prefix}[{index}]"))
        return out
    return {prefix: str(detail)}


# ---------------------------------------------------------------- worker API


def _is_http_url(value: str) -> bool:
    if len(value) > 2048:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_proxy_url(value: str) -> bool:
    if not value:
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https", "socks5", "socks5h") and bool(parts.hostname)


def _proxy_text(**kwargs: Any) -> Text:
    return Text(
        message="must be a string", required=False, allow_null=True, allow_blank=True, **kwargs
    )


class ProxySerializer(Object):
    id = _proxy_text(validators=[_must(lambda v: len(v) <= 100, "at most 100 characters")])
    url = _proxy_text(validators=[_must(_is_proxy_url, "an http, https or socks5 URL with a host")])
    type = _proxy_text()
    country = _proxy_text(validators=[_must(lambda v: len(v) <= 2, "ISO 3166 alpha-2")])


class SessionRequestSerializer(serializers.Serializer):
    """POST /sessions."""

    session_key = Text(
        message="required: 1-128 characters of A-Za-z0-9._:-",
        validators=[_must(_full(KEY_RE), "required: 1-128 characters of A-Za-z0-9._:-")],
    )
    provider = Text(message="unsupported provider", or_default="local", required=False)
    engine = Text(message="must be http or browser", or_default="http", required=False)
    timeout_s = Integer(
        message="an integer between 1 and 86400",
        min_value=1,
        max_value=86400,
        required=False,
        allow_null=True,
    )
    labels = AnyObject(message="must be an object", or_default={}, required=False)
    proxy = ProxySerializer(message="must be an object or null", required=False, allow_null=True)

    def __init__(self, *args: Any, providers: list[str], engines: tuple[str, ...], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.providers = providers
        self.engines = engines
        offer = f"unsupported provider; this worker offers {providers}"
        field = self.fields["provider"]
        field.message = offer  # type: ignore[attr-defined]
        field.error_messages = dict.fromkeys(field.error_messages, offer)

    def validate_provider(self, value: str) -> str:
        if value not in self.providers:
            raise serializers.ValidationError(
                f"unsupported provider; this worker offers {self.providers}"
            )
        return value

    def validate_engine(self, value: str) -> str:
        if value not in self.engines:
            raise serializers.ValidationError("must be http or browser")
        return value


class ItemSerializer(Object):
    item_id = Text(message="a string of 1-64 characters", min_length=1, max_length=64)
    url = Text(
        message="an absolute http or https URL",
        validators=[_must(_is_http_url, "an absolute http or https URL")],
    )


class OptionsSerializer(Object):
    """A job's options: the known ones checked, unknown ones ignored (and kept)."""

    timeout_s = Number(
        message="a number of seconds between 0 and 3600",
        required=False,
        validators=[_must(lambda v: 0 < v <= 3600, "a number of seconds between 0 and 3600")],
    )
    wait_until = Text(message="must be a string", required=False, allow_blank=True)
    delay_ms = Integer(
        message="an integer of milliseconds between 0 and 600000",
        min_value=0,
        max_value=600_000,
        required=False,
    )
    respect_robots = Boolean(message="must be a boolean", required=False)
    headers = Strings(message="an object of header name -> value", required=False, allow_null=True)
    selectors = Strings(
        message="an object of name -> CSS selector", required=False, allow_null=True
    )


class JobRequestSerializer(serializers.Serializer):
    """POST /sessions/{id}/jobs."""

    job_key = Text(
        message="required: 1-128 characters of A-Za-z0-9._:-",
        validators=[_must(_full(KEY_RE), "required: 1-128 characters of A-Za-z0-9._:-")],
    )
    items = AnyList(
        child=ItemSerializer(message="must be an object"),
        message=f"required: a list of 1 to {MAX_JOB_ITEMS} items",
        min_length=1,
        max_length=MAX_JOB_ITEMS,
    )
    options = OptionsSerializer(message="must be an object", or_default={}, required=False)

    def validate_items(self, items: list[dict[str, str]]) -> list[dict[str, str]]:
        seen: set[str] = set()
        duplicates: dict[Any, Any] = {}
        for index, item in enumerate(items):
            if item["item_id"] in seen:
                duplicates[index] = {"item_id": "duplicate item_id in this job"}
            seen.add(item["item_id"])
        if duplicates:
            raise serializers.ValidationError(duplicates)
        return items


def job_errors(detail: Any) -> dict[str, str]:
    """`flat_errors`, keeping the first `MAX_ITEM_ERRORS` of the items' errors."""
    errors = flat_errors(detail)
    items = [name for name in errors if name.startswith("items[")]
    for name in items[MAX_ITEM_ERRORS:]:
        del errors[name]
    return errors


# ---------------------------------------------------------------- writer API


def mission_id_of(value: Any) -> int | None:
    """A positive integer, or its decimal string of at most 18 digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


class MissionIdField(serializers.Field):
    """A positive integer, or its decimal string (at most 18 digits)."""

    default_error_messages = {
        "invalid": "required: a positive integer",
        "required": "required: a positive integer",
        "null": "required: a positive integer",
    }

    def to_internal_value(self, data: Any) -> int:
        mission_id = mission_id_of(data)
        if mission_id is None:
            self.fail("invalid")
        assert mission_id is not None
        return mission_id

    def to_representation(self, value: int) -> int:
        return value


class BatchMissionSerializer(Object):
    id = MissionIdField()


class BatchSerializer(serializers.Serializer):
    """POST /batches, its envelope (the records are checked by `RecordSerializer`)."""

    batch_key = Text(
        message="required: 1-200 characters of A-Za-z0-9._:-",
        validators=[_must(_full(BATCH_KEY_RE), "required: 1-200 characters of A-Za-z0-9._:-")],
    )
    mission = BatchMissionSerializer(message={"id": "required: a positive integer"})
    records = AnyList(message="required: a list")


class CompleteSerializer(serializers.Serializer):
    """POST /missions/{mission_id}/complete (the id comes from the path)."""

    total_records = Integer(message="required: a non-negative integer", min_value=0)
    run_id = Text(message="must be a string", or_default="", required=False)


def _aware(value: str) -> bool:
    parsed = parse_datetime(value)
    return parsed is not None and parsed.tzinfo is not None


class RecordSerializer(Object):
    item_id = Text(message="required: a string of 1-64 characters", min_length=1, max_length=64)
    url = Text(
        message="a string of at most 2048 characters",
        max_length=2048,
        or_default="",
        required=False,
    )
    fetched_at = Text(
        message="an ISO 8601 timestamp with offset",
        required=False,
        allow_null=True,
        validators=[_must(_aware, "an ISO 8601 timestamp with offset")],
    )
    http_status = Integer(
        message="an HTTP status code", min_value=100, max_value=599, required=False, allow_null=True
    )
    # DRF's metaclass takes declared fields off the class: no clash with `Serializer.data`.
    data = AnyObject(  # type: ignore[assignment]
        message="must be an object", required=False, allow_null=True
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        clean = super().to_internal_value(data)
        fetched = clean.get("fetched_at")
        return {
            "item_id": clean["item_id"],
            "url": clean.get("url", ""),
            "fetched_at": parse_datetime(fetched) if fetched else None,
            "http_status": clean.get("http_status"),
            "data": clean.get("data") or {},
        }
