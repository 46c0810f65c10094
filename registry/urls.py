from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from registry import api

# SimpleRouter: no API root view, which would clash with other apps under /api/.
router = SimpleRouter()
router.register("workers", api.WorkerViewSet, basename="worker")
router.register("writers", api.WriterViewSet, basename="writer")
router.register("uploaders", api.UploaderViewSet, basename="uploader")
router.register("proxies", api.ProxyViewSet, basename="proxy")
router.register("site-configs", api.SiteConfigViewSet, basename="siteconfig")
router.register("config", api.ConfigViewSet, basename="config")
router.register("auth/tokens", api.ApiTokenViewSet, basename="api-token")

urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/token/", api.TokenView.as_view(), name="auth-token"),
    *router.urls,
]
