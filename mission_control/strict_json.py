"""JSON request bodies are taken at their JSON types, as the OpenAPI schema states them.

DRF coerces by default: `"enabled": 0` or `"true"` becomes a boolean, `"domain": 0` a
string, `"max_sessions": "3"` an integer. The schema says boolean, string, integer, so
schemathesis rightly calls those requests invalid and expects a 400. The scalar fields
here (`StrictJSON`: booleans, strings, choices, integers, numbers, and DRF's fields built
on them) refuse another JSON type when the data being validated is a decoded JSON
document (a plain dict or list). Form and query data (a QueryDict, where everything is
a string) keep DRF's coercion.

The project's serializers declare their scalar fields from this module, and derive
their model serializers from `ModelSerializer`, whose model fields map to these; DRF's
classes are not changed. `tests/unit/test_strict_json.py` keeps DRF's own scalar fields
and `serializers.ModelSerializer` out of the project's code. The built-in node
(`localnode/serializers.py`) has stricter fields of its own, with the same type test
(`is_json_type`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import QueryDict
from rest_framework import serializers


def is_json_type(data: Any, types: tuple[type, ...]) -> bool:
    """Whether `data` is of one of the JSON `types`; a boolean is no number (only
    `bool` itself takes one)."""
    return isinstance(data, types) and (bool in types or not isinstance(data, bool))


def _from_json(field: serializers.Field) -> bool:
    """Whether the root serializer validates a decoded JSON document."""
    root: Any = field.root
    data = getattr(root, "initial_data", None)
    return data is not None and not isinstance(data, QueryDict) and isinstance(data, dict | list)


class StrictJSON:
    """A field's `to_internal_value` that first refuses a value of another JSON type
    than `json_types` (named `json_name` in the error) in a JSON document."""

    json_types: ClassVar[tuple[type, ...]] = ()
    json_name: ClassVar[str] = ""

    def expected_json_type(self, data: Any) -> str | None:
        """The JSON type `data` should have had, when it has another one; else None."""
        return None if is_json_type(data, self.json_types) else self.json_name

    def to_internal_value(self, data: Any) -> Any:
        if _from_json(self) and (expected := self.expected_json_type(data)):  # type: ignore[arg-type]
            raise serializers.ValidationError(f"Must be a JSON {expected}.", code="invalid")
        return super().to_internal_value(data)  # type: ignore[misc]


class BooleanField(StrictJSON, serializers.BooleanField):
    json_types = (bool,)
    json_name = "boolean"


class CharField(StrictJSON, serializers.CharField):
    json_types = (str,)
    json_name = "string"


class IntegerField(StrictJSON, serializers.IntegerField):
    json_types = (int,)
    json_name = "integer"


class FloatField(StrictJSON, serializers.FloatField):
    json_types = (int, float)
    json_name = "number"


class ChoiceField(StrictJSON, serializers.ChoiceField):
    """Choices all strings take a JSON string, all integers a JSON integer; mixed
    choices take either."""

    def expected_json_type(self, data: Any) -> str | None:
        kinds = {type(k) for k in self.choices}
        if kinds == {str}:
            return None if is_json_type(data, (str,)) else "string"
        if kinds == {int}:
            return None if is_json_type(data, (int,)) else "integer"
        return None


# DRF's fields built on those: the DRF class first, so that its own checks run before
# the JSON type's, where it calls its base.
class EmailField(serializers.EmailField, CharField):
    pass


class RegexField(serializers.RegexField, CharField):
    pass


class SlugField(serializers.SlugField, CharField):
    pass


class URLField(serializers.URLField, CharField):
    pass


class IPAddressField(serializers.IPAddressField, CharField):
    pass


class BigIntegerField(serializers.BigIntegerField, IntegerField):  # type: ignore[name-defined]
    pass


class FilePathField(serializers.FilePathField, ChoiceField):
    pass


class HStoreField(serializers.HStoreField):
    child = CharField(allow_blank=True, allow_null=True)


STRICT_FIELDS: dict[type[serializers.Field], type[serializers.Field]] = {
    serializers.BooleanField: BooleanField,
    serializers.CharField: CharField,
    serializers.IntegerField: IntegerField,
    serializers.FloatField: FloatField,
    serializers.ChoiceField: ChoiceField,
    serializers.EmailField: EmailField,
    serializers.RegexField: RegexField,
    serializers.SlugField: SlugField,
    serializers.URLField: URLField,
    serializers.IPAddressField: IPAddressField,
    serializers.BigIntegerField: BigIntegerField,  # type: ignore[attr-defined]
    serializers.FilePathField: FilePathField,
    serializers.HStoreField: HStoreField,
}


class ModelSerializer(serializers.ModelSerializer):
    """The project's model serializers: model fields map to the strict fields."""

    serializer_field_mapping = {
        model_field: STRICT_FIELDS.get(field, field)
        for model_field, field in serializers.ModelSerializer.serializer_field_mapping.items()
    }
    serializer_choice_field = ChoiceField
