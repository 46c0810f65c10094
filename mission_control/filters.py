"""Query filters that refuse what the schema calls invalid.

django-filter's boolean filter reads any unknown word as "no filter", and its ISO
date-time filter also takes a bare date: a request the OpenAPI schema calls invalid
(`?enabled=maybe`, `?created_after=2024-01-01`) was answered 200 as if the parameter
were absent. These refuse it with a 400 naming the parameter."""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django import forms
from django.db import models
from django_filters.fields import IsoDateTimeField
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS
from django_filters.rest_framework import DjangoFilterBackend

TRUE_WORDS = frozenset({"true", "True", "1"})
FALSE_WORDS = frozenset({"false", "False", "0"})
BOOLEAN_MESSAGE = "Must be true or false."
# RFC 3339 date-time (OpenAPI `format: date-time`): date, `T`, time and the offset,
# which RFC 3339 requires (`Z` or ±hh:mm). Nothing around it.
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)


def strict_bool(raw: str | None) -> bool | None:
    """None when absent or empty; ValidationError for anything but true/false/1/0."""
    if raw in (None, ""):
        return None
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise forms.ValidationError(BOOLEAN_MESSAGE, code="invalid")


class StrictBooleanField(forms.NullBooleanField):
    # NullBooleanSelect would read an unknown word as None before to_python sees it.
    widget = forms.TextInput

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        return strict_bool(str(value))

    def validate(self, value: Any) -> None:
        return None


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class StrictDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> Any:
        # `?created_before=` too: the schema's date-time has no empty spelling.
        if isinstance(value, str) and not RFC3339.match(value):
            raise forms.ValidationError(
                "Must be an RFC 3339 date-time (2024-01-31T12:00:00Z).", code="invalid"
            )
        return super().to_python(value)


class StrictFilterSet(django_filters.FilterSet):
    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.BooleanField: {"filter_class": StrictBooleanFilter},
    }


class FilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend whose generated filter sets (`filterset_fields`) are strict."""

    filterset_base = StrictFilterSet
