from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, pagination

from mission_control import hardening


def checked_page_size(request: Any, default: int, maximum: int) -> int:
    """`page_size` from the query: absent or 0 is the default, above the maximum is the
    maximum, anything but a whole number is a 400 (the schema says integer)."""
    raw = request.query_params.get("page_size")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise exceptions.ValidationError({"page_size": ["Must be a whole number."]})
    return min(int(raw), maximum) or default


def _page_size_bounds(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The schema states what checked_page_size accepts: a whole number from 0."""
    for parameter in parameters:
        if parameter.get("name") == "page_size":
            parameter["schema"] = {**parameter.get("schema", {}), "minimum": 0}
    return parameters


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Any) -> int:
        return checked_page_size(request, self.page_size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return _page_size_bounds(super().get_schema_operation_parameters(view))


INVALID_CURSOR = "Invalid cursor: use the `next` or `previous` link of an earlier page."
CURSOR_DESCRIPTION = (
    "Opaque position returned in the `next`/`previous` links of an earlier page; "
    "any other value answers 400."
)


def invalid_cursor() -> exceptions.ValidationError:
    return exceptions.ValidationError({"cursor": [INVALID_CURSOR]})


class CursorPagination(pagination.CursorPagination):
    """Stable, count-free pagination for big, growing tables (missions, items, events).

    A cursor is client input: it is decoded and its position checked against the
    ordering field's type before any query, so a crafted or mangled one
    (`base64("p=abc")`, not base64 at all) is a 400 naming the `cursor` field, in the
    one error shape, never a 500. The schema describes the parameter as opaque: only
    the `next`/`previous` links of an earlier page are valid."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"
    cursor_query_description = CURSOR_DESCRIPTION

    def get_page_size(self, request: Any) -> int:
        return checked_page_size(request, self.page_size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return _page_size_bounds(super().get_schema_operation_parameters(view))

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        self._model = getattr(queryset, "model", None)
        return super().paginate_queryset(queryset, request, view)

    invalid_cursor_message = INVALID_CURSOR

    def decode_cursor(self, request: Any) -> Any:
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise invalid_cursor() from None
        if cursor is not None and cursor.position is not None:
            self._check_position(str(cursor.position))
        return cursor

    def _check_position(self, position: str) -> None:
        invalid = invalid_cursor()
        if hardening.text_problem(position) or len(position) > 200:
            raise invalid
        ordering = self.ordering if isinstance(self.ordering, list | tuple) else [self.ordering]
        name = str(ordering[0]).lstrip("-")
        if self._model is None or "__" in name:
            return
        try:
            meta = self._model._meta
            field = meta.pk if name == "pk" else meta.get_field(name)
            value = field.to_python(position)
        except FieldDoesNotExist:
            return
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise invalid from None
        if isinstance(value, int) and not -hardening.INT64_MAX - 1 <= value <= hardening.INT64_MAX:
            raise invalid
