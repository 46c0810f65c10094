from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from mission_control import health, metrics
from mission_control.api import error_body
from mission_control.apidocs import needs_login
from orchestrator.api_root import ApiRootView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.liveness, name="healthz"),
    path("healthz/orchestrator", health.orchestrator, name="healthz-orchestrator"),
    path("readyz", health.readiness, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/schema/", needs_login(SpectacularAPIView.as_view()), name="api-schema"),
    path(
        "api/docs/",
        # The upstream page plus CSP nonces on its inline <style> and <script>.
        needs_login(
            SpectacularSwaggerView.as_view(url_name="api-schema", template_name="api_docs.html")
        ),
        name="api-docs",
    ),
    path("api/", needs_login(ApiRootView.as_view()), name="api-root"),
    path("api/", include("localnode.api_urls")),
    path("api/", include("registry.urls")),
    path("api/", include("orchestrator.urls")),
    path("", include("dashboard.urls")),
]

if settings.LOCALNODE_ENABLED:
    from localnode import demo

    urlpatterns.insert(0, path("local/", include("localnode.urls")))
    # The demo shop's robots.txt (it disallows /local/demo/privado/).
    urlpatterns.insert(0, path("robots.txt", demo.robots_txt, name="robots-txt"))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unmatched API paths answer in the API's error shape, not an HTML page."""
    path = request.path
    if path.startswith("/api/") or (path.startswith("/local/") and "/demo/" not in path):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    response: Any = defaults.page_not_found(request, exception or Exception())
    return response
