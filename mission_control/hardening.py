"""Input hardening in one place: hostile input is a clear 4xx, never a 500.

- `check_tree(value)`: a decoded JSON document is refused (with the offending field
  named) when it nests deeper than MAX_JSON_DEPTH, holds a NUL character or a lone
  surrogate in a key or a string, an integer outside 64 bits or a non-finite number.
- `loads(raw)`: json.loads plus `check_tree`; NaN/Infinity literals and nesting deep
  enough to exhaust the parser are refused too. Used by the built-in worker/writer
  (`localnode.http.json_body`) and the proxy import. The API's `JSONParser` refuses
  NaN/Infinity and depth only: the fields a view reads are its serializer's to check
  (DRF refuses NUL and surrogates in every CharField), extra fields are ignored.
- `InputGuardMiddleware`: bodies larger than the limit answer 413, NUL bytes and lone
  surrogates in the path or the query string answer 400 —
  in the API's error shape under /api/ and /local/ — and the last few exception types
  that only bad input produces (text the database cannot store, numbers it cannot hold,
  Django's own "too big" and "too many fields") are turned into the same 4xx answers.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DataError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32
INT64_MAX = 2**63 - 1
# The built-in worker and writer take batches larger than Django's form limit.
LOCAL_MAX_BODY_BYTES = 64 * 1024 * 1024
API_PREFIXES = ("/api/", "/local/")


class BadInput(ValueError):
    """Refused input: `field` names where it is ("body" for the document itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored (NUL, lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an invalid (lone surrogate) character"
    return None


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        return "number out of range"
    if isinstance(value, float) and not math.isfinite(value):
        return "number out of range"
    return None


def _place(fields: dict[str, Any], path: list[str], message: str) -> None:
    """Put `message` at `path` in a nested dict of fields ({"urls": {"1": "..."}})."""
    node = fields
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return  # a message is already there
        node = child
    node.setdefault(path[-1], message)


def problems(value: Any, *, max_depth: int = MAX_JSON_DEPTH, limit: int = 50) -> dict[str, Any]:
    """Every problem of a decoded document (at most `limit`), as nested fields; a
    document nested too deep is one problem. Iterative: no recursion limit."""
    fields: dict[str, Any] = {}
    found = 0
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack and found < limit:
        node, path = stack.pop()
        if isinstance(node, dict | list):
            if len(path) >= max_depth:
                return {path[0] if path else "body": f"nested deeper than {max_depth} levels"}
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str) and (problem := text_problem(key)):
                    _place(fields, path or ["body"], f"a key {problem}")
                    found += 1
                    continue
                stack.append((child, [*path, str(key)]))
        elif problem := _scalar_problem(node):
            _place(fields, path or ["body"], problem)
            found += 1
    return fields


def _too_deep(value: Any, max_depth: int = MAX_JSON_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            if depth > max_depth:
                return True
            stack.extend((child, depth + 1) for child in node)
    return False


def check_tree(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise BadInput (naming the first field) when `value` has any problem."""
    fields = problems(value, max_depth=max_depth, limit=1)
    if fields:
        raise BadInput(*_first(fields))


def _first(fields: dict[str, Any]) -> tuple[str, str]:
    path: list[str] = []
    node: Any = fields
    while isinstance(node, dict):
        key = next(iter(node))
        path.append(key)
        node = node[key]
    return ".".join(path), str(node)


def _no_constant(name: str) -> Any:
    raise BadInput("body", f"{name} is not a JSON number")


def decode(raw: bytes | str) -> Any:
    """json.loads without NaN/Infinity and without exhausting the recursion limit."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadInput("body", f"nested deeper than {MAX_JSON_DEPTH} levels") from None


def loads(raw: bytes | str) -> Any:
    """Decode and check a JSON document; BadInput or ValueError when it is refused."""
    value = decode(raw)
    check_tree(value)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser without NaN/Infinity and with a depth limit (a 400)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            value = decode(raw)
        except BadInput as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None
        # Depth only: NUL, lone surrogates and number ranges in the fields a view reads
        # are its serializer's to refuse, field by field; extra fields are ignored.
        if _too_deep(value):
            raise ValidationError({"body": [f"nested deeper than {MAX_JSON_DEPTH} levels"]})
        return value


# ------------------------------------------------------------------ the middleware


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def _answer(request: HttpRequest, status: int, code: str, message: str, field: str = "") -> Any:
    if _is_api(request):
        error: dict[str, Any] = {"code": code, "message": message}
        if field:
            error["fields"] = {field: message}
        return JsonResponse({"error": error}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def body_limit(request: HttpRequest) -> int:
    if request.path.startswith("/local/"):
        return LOCAL_MAX_BODY_BYTES
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) or LOCAL_MAX_BODY_BYTES


# Query parameters the API documents as arrays (form style, exploded): only these may
# be repeated; any other given twice is a 400 (the schema says one value).
REPEATABLE_QUERY = frozenset({"status", "outcome"})


def _query_problem(request: HttpRequest) -> tuple[str, str] | None:
    for key, values in request.GET.lists():
        if problem := text_problem(key):
            return key[:50], problem
        if len(values) > 1 and request.path.startswith("/api/") and key not in REPEATABLE_QUERY:
            return key, "given more than once"
        for value in values:
            if problem := text_problem(value):
                return key, problem
    return None


class InputGuardMiddleware:
    """Refuses hostile requests before any view runs (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self._refuse(request)
        if refused is not None:
            response: HttpResponse = refused
            return response
        return self.get_response(request)

    def _refuse(self, request: HttpRequest) -> HttpResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _answer(request, 400, "invalid_request", "Invalid Content-Length.")
        limit = body_limit(request)
        if length > limit:
            message = f"Body larger than {limit} bytes."
            return _answer(request, 413, "payload_too_large", message)
        if problem := text_problem(request.path):
            return _answer(request, 400, "invalid_request", f"The path {problem}.", "path")
        if found := _query_problem(request):
            field, problem = found
            return _answer(request, 400, "invalid_request", f"{field}: {problem}.", field)
        return None

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        """The safety net: exceptions only bad input produces are a 4xx, not a 500."""
        if isinstance(exc, RequestDataTooBig):
            return _answer(request, 413, "payload_too_large", "Request body too large.")
        if isinstance(exc, TooManyFieldsSent):
            return _answer(request, 400, "invalid_request", "Too many fields.")
        if isinstance(exc, BadInput):
            return _answer(request, 400, "invalid_request", exc.message, exc.field)
        if isinstance(exc, UnicodeEncodeError | OverflowError | DataError) or (
            isinstance(exc, ValueError) and "NUL" in str(exc)
        ):
            logger.warning("refused input on %s: %s", request.path, type(exc).__name__)
            return _answer(request, 400, "invalid_request", "Input the database cannot store.")
        return None
