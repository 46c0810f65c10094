"""A `browserbase`-only site and a `local` site side by side: run_orchestrator, the
built-in worker and writer over real HTTP, and a fake Browserbase on loopback whose
sessions are a real Chromium reached over CDP. Browserbase's concurrency limit (429)
and its 5xx make a mission wait, never fail; every Browserbase session ends released."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localnode import engines
from localnode.models import LocalRecord, LocalSession
from orchestrator import actions
from orchestrator.models import BrowserSession, Mission
from orchestrator.states import MissionStatus
from registry import config
from registry.models import Worker
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for
from tests.e2e.test_localnode_end_to_end import free_port, server_up
from tests.fakes.browserbase import FakeBrowserbase, LocalChromium

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
    pytest.mark.skipif(
        engines.browser_unavailable_reason() is not None,
        reason=f"browser engine unavailable: {engines.browser_unavailable_reason()}",
    ),
]

KEY = "local-node-test-key"
BB_KEY = "bb_live_e2e_secret"
PROJECT = "proj-e2e"


@pytest.fixture
def fake() -> Iterator[FakeBrowserbase]:
    chromium = LocalChromium()
    server = FakeBrowserbase(api_key=BB_KEY, project_id=PROJECT, connect_url=chromium.ws_url)
    server.start()
    yield server
    server.stop()
    chromium.stop()


def finished(*missions: Mission) -> bool:
    done = (MissionStatus.FINALIZADO, MissionStatus.ERRO)
    return all(Mission.objects.get(pk=m.pk).status in done for m in missions)


def test_browserbase_and_local_sites_finish_side_by_side(
    tmp_path: Path, fake: FakeBrowserbase
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LOCALNODE_ENABLED": "1",
        "LOCALNODE_API_KEY": KEY,
        "BROWSERBASE_API_KEY": BB_KEY,
        "BROWSERBASE_PROJECT_ID": PROJECT,
        "BROWSERBASE_BASE_URL": fake.root_url,
    }
    fake.limit = 1  # a second concurrent session is refused with 429
    fake.fail_creates = [503, 500]  # and Browserbase starts with two server errors
    web = spawn("runserver", f"127.0.0.1:{port}", "--noreload", log=tmp_path / "web.log", **env)
    runner = spawn("run_localnode", log=tmp_path / "localnode.log", **env)
    orchestrator = None
    try:
        wait_for(lambda: server_up(base), 120, "the web server")
        for key, value in {
            "session_tick_s": 0.3,
            "worker_tick_s": 0.3,
            "mission_tick_s": 0.3,
        }.items():
            config.set_value(key, value)
        # Offers only `local` until its /health says more.
        worker = factories.WorkerFactory(
            base_url=f"{base}/local/worker/api/v1", api_key=KEY, providers=["local"]
        )
        factories.WriterFactory(
            base_url=f"{base}/local/writer/api/v1", api_key=KEY, is_default=True
        )
        factories.SiteConfigFactory(domain="*", proxy_types=[], items_per_job=5, max_sessions=2)
        factories.SiteConfigFactory(
            domain="localhost",
            providers=["browserbase"],
            proxy_types=[],
            engine="browser",
            items_per_job=5,
            max_sessions=2,
        )
        remote = actions.create_mission(
            name="Browserbase",
            urls=[f"http://localhost:{port}/local/demo/p/{n}/" for n in range(1, 13)],
        )
        local = actions.create_mission(
            name="Local", urls=[f"{base}/local/demo/p/{n}/" for n in range(20, 32)]
        )
        orchestrator = spawn("run_orchestrator", log=tmp_path / "orchestrator.log")
        try:
            wait_for(lambda: finished(remote, local), 240, "both missions to finish")
        except AssertionError:
            for m in Mission.objects.all():
                print("MISSION", m.pk, m.domain, m.status, m.wait_reason, m.error_code)
            for s in BrowserSession.objects.all():
                print("BS", s.pk, s.mission_id, s.status, s.provider, s.error_code, s.error_message)
            print("CALLS", fake.calls[:20])
            print((tmp_path / "orchestrator.log").read_text()[-3000:])
            print((tmp_path / "localnode.log").read_text()[-3000:])
            raise
        wait_for(lambda: not fake.running, 60, "every Browserbase session released")
    finally:
        codes = [stop(p) for p in (orchestrator, runner, web) if p is not None]
    log = (tmp_path / "orchestrator.log").read_text()
    for mission in (remote, local):
        mission.refresh_from_db()
        assert mission.status == MissionStatus.FINALIZADO, log[-3000:]
        assert LocalRecord.objects.filter(mission_id=mission.pk).count() == 12
    assert set(
        BrowserSession.objects.filter(mission=remote).values_list("provider", flat=True)
    ) == {"browserbase"}
    assert set(BrowserSession.objects.filter(mission=local).values_list("provider", flat=True)) == {
        "local"
    }
    # Each Browserbase session carries its id there and the inspector link Browserbase's
    # debug endpoint gave (what the mission page links to).
    opened = BrowserSession.objects.filter(mission=remote).exclude(remote_id="")
    assert opened.exists()  # (some were refused by the 429 and 5xx before they opened)
    for bb_session in opened:
        assert bb_session.provider_session_id.startswith("bb-")
        assert bb_session.provider_inspect_url.startswith(f"{fake.root_url}/devtools/")
    assert Worker.objects.get(pk=worker.pk).providers == ["local", "browserbase"]
    # Browserbase's 429 was a full worker to the orchestrator, not a fault of the mission.
    assert fake.refused >= 1 and fake.fail_creates == []
    assert remote.attempt == 1 and remote.failed_items == 0
    assert fake.created and fake.released and not fake.running
    assert {c["userMetadata"]["mc_session_key"] for c in fake.created} <= set(
        LocalSession.objects.filter(provider="browserbase").values_list("session_key", flat=True)
    )
    assert codes[0] == 0
