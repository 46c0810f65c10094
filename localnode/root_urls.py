"""A root URLconf with only the local node: the Worker and Writer APIs and the demo
shop at /local/, the records export under /api/. For a process that serves only the
local node (ROOT_URLCONF=localnode.root_urls) and for tests, where LOCALNODE_ENABLED
may be off (it defaults to off on PostgreSQL)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from localnode import demo

urlpatterns: list[URLPattern | URLResolver] = [
    path("robots.txt", demo.robots_txt, name="robots-txt"),
    path("local/", include("localnode.urls")),
    path("api/", include("localnode.api_urls")),
]
