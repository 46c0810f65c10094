"""The API's front door for people: anonymous visitors of /api/, /api/docs/ and
/api/schema/ are told how to authenticate instead of getting a bare 401. A browser
(Accept: text/html) is sent to the login page and back; any other client gets a JSON
401 in the one error shape naming POST /api/auth/token/."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse

from mission_control.api import error_body

HOW_TO_AUTHENTICATE = (
    "Authentication required: POST /api/auth/token/ with username and password, then "
    "send the header 'Authorization: Token <token>' (or log in at /login/ in a browser)."
)


def wants_html(request: HttpRequest) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def needs_login(view: Callable[..., Any]) -> Callable[..., HttpResponse]:
    """Anonymous requests without credentials: login redirect or a JSON 401 that says
    how to authenticate. Requests carrying credentials go to `view`, which checks them."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated or "Authorization" in request.headers:
            response: HttpResponse = view(request, *args, **kwargs)
            return response
        if wants_html(request):
            return redirect_to_login(request.get_full_path())
        response = JsonResponse(error_body("not_authenticated", HOW_TO_AUTHENTICATE), status=401)
        response["WWW-Authenticate"] = 'Token realm="api"'
        return response

    return wrapped
