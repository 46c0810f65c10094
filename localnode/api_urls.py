from __future__ import annotations

from django.urls import URLPattern, path

from localnode.export import MissionRecordsExport

urlpatterns: list[URLPattern] = [
    path(
        "missions/<int:mission_id>/records/",
        MissionRecordsExport.as_view(),
        name="mission-records-export",
    ),
]
