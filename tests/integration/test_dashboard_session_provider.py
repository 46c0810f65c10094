"""Each session's provider on the live sessions page and the API; the Browserbase session
id and its inspector link (as the worker got it from Browserbase's debug endpoint) on the
mission page, never a made-up dashboard URL (issue #17)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from orchestrator.states import SessionStatus
from tests import factories

pytestmark = pytest.mark.django_db

INSPECT = "https://www.browserbase.com/devtools-fullscreen/inspector.html?wss=x/bb-42&a=1"


def test_provider_id_and_inspector_on_the_pages_and_the_api(
    login: Callable[[str | None], Client], viewer_api: APIClient
) -> None:
    mission = factories.MissionFactory(status="EXECUTANDO")
    worker = factories.WorkerFactory(providers=["local", "browserbase"])
    bb = factories.BrowserSessionFactory(
        mission=mission,
        worker=worker,
        status=SessionStatus.READY,
        provider="browserbase",
        provider_session_id="bb-42",
        provider_inspect_url=INSPECT,
    )
    factories.BrowserSessionFactory(
        mission=mission, worker=worker, status=SessionStatus.BUSY, provider="local"
    )
    client = login("viewer")
    page = client.get(f"/missoes/{mission.pk}/").content.decode()
    assert "bb-42" in page and f'href="{INSPECT.replace("&", "&amp;")}"' in page
    assert "browserbase.com/sessions/" not in page
    execution = client.get("/execucao/").content.decode()
    assert execution.count("data-session-provider") == 2 and "bb-42" in execution
    assert "data-session-provider>local<" in execution
    api = viewer_api.get(f"/api/sessions/{bb.pk}/").json()
    assert (api["provider"], api["provider_session_id"], api["provider_inspect_url"]) == (
        "browserbase",
        "bb-42",
        INSPECT,
    )
