"""The whole flow on one machine: run_orchestrator, the built-in worker and writer over
real HTTP, the demo catalogue, and traffic through a real forward proxy on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from localnode.models import LocalRecord
from orchestrator import actions
from orchestrator.models import Mission, MissionItem
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus
from registry import config
from registry.forward_proxy import ForwardProxy
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("processes"),
]

KEY = "local-node-test-key"
BLOCKED = {89, 97, 178, 194, 267, 291}  # the demo answers 403/429 for these


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_200_demo_pages_reach_finalizado_through_a_real_proxy(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"LOCALNODE_ENABLED": "1", "LOCALNODE_API_KEY": KEY}
    proxy = ForwardProxy(username="demo", password="demo-pass").start()
    web = spawn("runserver", f"127.0.0.1:{port}", "--noreload", log=tmp_path / "web.log", **env)
    runner = spawn("run_localnode", log=tmp_path / "localnode.log", **env)
    orchestrator = None
    try:
        wait_for(lambda: server_up(base), 30, "the web server")
        for key, value in {
            "session_tick_s": 0.3,
            "worker_tick_s": 0.3,
            "mission_tick_s": 0.3,
            "proxy_cooldown_s": 0,
        }.items():
            config.set_value(key, value)
        factories.WorkerFactory(base_url=f"{base}/local/worker/api/v1", api_key=KEY)
        factories.WriterFactory(
            base_url=f"{base}/local/writer/api/v1", api_key=KEY, is_default=True
        )
        host, proxy_port = proxy.server_address[:2]
        for n in range(2):
            factories.ProxyFactory(
                external_id=f"loop-{n}",
                type="datacenter",
                host=host,
                port=proxy_port,
                username="demo",
                password="demo-pass",
                max_sessions=2,
            )
        factories.SiteConfigFactory(
            domain="*", proxy_types=["datacenter"], items_per_job=25, max_sessions=3
        )
        good = [f"{base}/local/demo/p/{n}/" for n in range(1, 207) if n not in BLOCKED][:200]
        bad_404 = f"{base}/local/demo/status/404/"
        bad_429 = f"{base}/local/demo/p/97/"
        mission = actions.create_mission(name="Demo e2e", urls=[*good, bad_404, bad_429])

        orchestrator = spawn("run_orchestrator", log=tmp_path / "orchestrator.log")
        wait_for(
            lambda: (
                Mission.objects.get(pk=mission.pk).status
                in (MissionStatus.FINALIZADO, MissionStatus.ERRO)
            ),
            240,
            "the mission to finish",
        )
    finally:
        codes = [stop(p) for p in (orchestrator, runner, web) if p is not None]
        proxy.stop()
    mission.refresh_from_db()
    log = (tmp_path / "orchestrator.log").read_text()
    assert mission.status == MissionStatus.FINALIZADO, log[-3000:]
    assert (mission.done_items, mission.failed_items) == (200, 2)
    assert LocalRecord.objects.filter(mission_id=mission.pk).count() == 200
    assert set(
        LocalRecord.objects.filter(mission_id=mission.pk).values_list("url", flat=True)
    ) == set(good)
    not_found = MissionItem.objects.get(mission=mission, url=bad_404)
    assert (not_found.status, not_found.error_code, not_found.attempts) == (
        ItemStatus.FAILED,
        ErrorCode.SCRAPE_HTTP_ERROR,
        1,
    )
    throttled = MissionItem.objects.get(mission=mission, url=bad_429)
    assert (throttled.status, throttled.error_code) == (ItemStatus.FAILED, ErrorCode.SCRAPE_BLOCKED)
    assert throttled.attempts == config.get("max_item_attempts")
    # Every page went through the forward proxy.
    proxied = {line.split(" ", 1)[1] for line in proxy.requests if line.startswith("GET ")}
    assert set(good) <= proxied
    assert codes[0] == 0
