"""Mounted at /local/ when LOCALNODE_ENABLED: the Worker API, the Writer API and the
demo shop. Contract paths have no trailing slash (clients append them to a base URL);
one is tolerated."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path, re_path

from localnode import demo, uploader_api, worker_api, writer_api

worker_patterns = [
    re_path(r"^health/?$", worker_api.health, name="worker-health"),
    re_path(r"^sessions/?$", worker_api.sessions, name="worker-sessions"),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/?$",
        worker_api.session_detail,
        name="worker-session",
    ),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/jobs/?$",
        worker_api.session_jobs,
        name="worker-session-jobs",
    ),
    re_path(r"^jobs/(?P<job_id>[^/]+)/?$", worker_api.job_detail, name="worker-job"),
    re_path(
        r"^jobs/(?P<job_id>[^/]+)/results/?$", worker_api.job_results, name="worker-job-results"
    ),
]

writer_patterns = [
    re_path(r"^health/?$", writer_api.health, name="writer-health"),
    re_path(r"^batches/?$", writer_api.batches, name="writer-batches"),
    re_path(
        r"^missions/(?P<mission_id>[^/]+)/complete/?$",
        writer_api.complete,
        name="writer-complete",
    ),
]

demo_patterns = [
    path("", demo.index, name="demo-index"),
    path("p/<int:n>/", demo.product_page, name="demo-product"),
    path("status/<int:code>/", demo.status_page, name="demo-status"),
    path("captcha/", demo.captcha, name="demo-captcha"),
    path("hold/<slug:token>/", demo.hold_page, name="demo-hold"),
    path("privado/<int:n>/", demo.product_page, name="demo-private"),
]

uploader_patterns = [
    re_path(r"^health/?$", uploader_api.health, name="uploader-health"),
    re_path(r"^uploads/?$", uploader_api.uploads, name="uploader-uploads"),
]

app_name = "localnode"
urlpatterns: list[URLPattern | URLResolver] = [
    path("worker/api/v1/", include(worker_patterns)),
    path("writer/api/v1/", include(writer_patterns)),
    path("uploader/api/v1/", include(uploader_patterns)),
    path("arquivos/<int:pk>/", uploader_api.upload_file, name="upload-file"),
    path("demo/", include(demo_patterns)),
]
