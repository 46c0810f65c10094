"""GET /api/: the API's collections, the docs and how to get a token (viewer role;
anonymous callers are told how to authenticate by mission_control.apidocs)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from mission_control.permissions import ViewerRole
from orchestrator import urls as orchestrator_urls
from registry import urls as registry_urls


def collections() -> list[tuple[str, str]]:
    """(prefix, list url name) of every router-registered collection, by prefix."""
    found = [
        (prefix, f"{basename}-list")
        for router in (registry_urls.router, orchestrator_urls.router)
        for prefix, _viewset, basename in router.registry
    ]
    return sorted(found)


@extend_schema(exclude=True)  # a discovery document, not an operation
class ApiRootView(APIView):
    permission_classes = [ViewerRole]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(
            {
                "collections": {
                    prefix: reverse(name, request=request) for prefix, name in collections()
                },
                "docs": reverse("api-docs", request=request),
                "schema": reverse("api-schema", request=request),
                "auth": {
                    "token": reverse("auth-token", request=request),
                    "how": "POST username and password to `token`, then send "
                    "'Authorization: Token <token>'.",
                },
            }
        )
