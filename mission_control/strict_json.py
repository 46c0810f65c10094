"""JSON request bodies are taken at their JSON types, as the OpenAPI schema states them.

DRF coerces by default: `"enabled": 0` or `"true"` becomes a boolean, `"domain": 0` a
string, `"max_sessions": "3"` an integer. The schema says boolean, string, integer, so
schemathesis rightly calls those requests invalid and expects a 400. `install()` (run
once, from the registry app's `ready`) makes the scalar fields refuse another JSON type
when the data being validated is a decoded JSON document (a plain dict or list). Form
and query data (a QueryDict, where everything is a string) keep DRF's coercion.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import serializers

_INSTALLED = False


def _from_json(field: serializers.Field) -> bool:
    """Whether the root serializer validates a decoded JSON document."""
    root: Any = field.root
    data = getattr(root, "initial_data", None)
    return data is not None and not isinstance(data, QueryDict) and isinstance(data, dict | list)


def _wrong(field: serializers.Field, expected: str) -> None:
    raise serializers.ValidationError(f"Must be a JSON {expected}.", code="invalid")


def _type_ok(field: serializers.Field, data: Any) -> str | None:
    """The JSON type `data` should have had, when it has another one; else None."""
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(data, bool) else "boolean"
    if isinstance(field, serializers.ChoiceField):
        kinds = {type(k) for k in field.choices}
        if kinds == {str}:
            return None if isinstance(data, str) else "string"
        if kinds == {int}:
            return None if isinstance(data, int) and not isinstance(data, bool) else "integer"
        return None
    if isinstance(field, serializers.CharField):
        return None if isinstance(data, str) else "string"
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(data, int) and not isinstance(data, bool) else "integer"
    if isinstance(field, serializers.FloatField):
        ok = isinstance(data, int | float) and not isinstance(data, bool)
        return None if ok else "number"
    return None


def _strict(original: Any) -> Any:
    def to_internal_value(self: serializers.Field, data: Any) -> Any:
        if _from_json(self) and (expected := _type_ok(self, data)):
            _wrong(self, expected)
        return original(self, data)

    to_internal_value.__wrapped__ = original  # type: ignore[attr-defined]
    return to_internal_value


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    for cls in (
        serializers.BooleanField,
        serializers.CharField,
        serializers.ChoiceField,
        serializers.IntegerField,
        serializers.FloatField,
    ):
        cls.to_internal_value = _strict(cls.to_internal_value)  # type: ignore[method-assign]
