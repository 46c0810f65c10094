"""Plumbing shared by the local Worker and Writer APIs: bearer auth, JSON bodies and the
contracts' error shape ``{"error": {"code", "message", "fields"?}}``."""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mission_control import hardening

KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # use fullmatch
BATCH_KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,200}")  # use fullmatch
# Batches may be larger than Django's form-oriented DATA_UPLOAD_MAX_MEMORY_SIZE.
MAX_BODY_BYTES = 64 * 1024 * 1024

View = Callable[..., HttpResponse]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.extra = extra

    def response(self) -> JsonResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        if self.fields:
            error["fields"] = self.fields
        return JsonResponse({"error": error}, status=self.status)


def invalid(fields: dict[str, str], code: str = "invalid_request") -> ApiError:
    names = ", ".join(sorted(fields))
    return ApiError(422, code, f"Invalid fields: {names}.", fields)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object; 400 invalid_json when it is not JSON at all, 422 when
    it is JSON but not an object."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"Body larger than {MAX_BODY_BYTES} bytes.")
    raw = request.read(MAX_BODY_BYTES + 1) if length else b""
    try:
        payload = hardening.loads(raw.decode("utf-8"))
    except hardening.BadInput as exc:
        raise ApiError(400, "invalid_json", exc.message, {exc.field: exc.message}) from None
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "The body is not valid UTF-8 JSON.") from None
    if not isinstance(payload, dict):
        raise invalid({"body": "must be a JSON object"})
    return payload


def _authorized(request: HttpRequest) -> bool:
    expected = settings.LOCALNODE_API_KEY
    if not expected:
        return True
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def api_view(methods: tuple[str, ...]) -> Callable[[View], View]:
    """CSRF-exempt JSON endpoint with bearer auth, a method check and ApiError handling."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not _authorized(request):
                response = ApiError(401, "unauthorized", "Missing or wrong bearer key.").response()
                response["WWW-Authenticate"] = "Bearer"
                return response
            if request.method not in methods:
                response = ApiError(
                    405, "method_not_allowed", f"{request.method} is not allowed here."
                ).response()
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.response()

        return wrapper

    return decorate


def as_int(value: str, prefix: str) -> int | None:
    """`s-12` → 12 for ids of the form prefix + number; None for anything else."""
    if not value.startswith(prefix):
        return None
    digits = value[len(prefix) :]
    if not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)
