from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit import context


class AuditContextMiddleware:
    """Makes the current request known to audit records for its duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = context.set_request(request)
        try:
            return self.get_response(request)
        finally:
            context.reset(token)
