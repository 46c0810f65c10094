from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, pagination

from mission_control import hardening


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class CursorPagination(pagination.CursorPagination):
    """Stable, count-free pagination for big, growing tables (missions, items, events).

    A cursor is client input: its position is checked against the ordering field's type
    before any query, so a crafted one (`base64("p=abc")`) is DRF's 404 "Invalid
    cursor" (in the one error shape) like any other unknown cursor, not a 500. A 404,
    not a 400: the schema calls any string a valid cursor, and a cursor that points
    nowhere is a page that does not exist."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        self._model = getattr(queryset, "model", None)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Any) -> Any:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            self._check_position(str(cursor.position))
        return cursor

    def _check_position(self, position: str) -> None:
        invalid = exceptions.NotFound(self.invalid_cursor_message)
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
