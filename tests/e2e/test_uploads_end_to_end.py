"""The demo with uploads turned on at run time (issue #21, "Done when"): run_orchestrator,
the built-in worker, writer and uploader over real HTTP, set up by `bootstrap`. Blocked
and missing pages keep their evidence, with the browser's screenshot as a file; then
`uploads_enabled` switched on in Configurações (the config row, no restart) sends every
snapshot and the export to the built-in uploader, and their links resolve for a
logged-in user only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.test import Client

from dashboard import settings_catalog
from localnode import engines
from localnode.models import LocalUpload
from mission_control import evidence_files
from orchestrator import actions
from orchestrator.models import ItemEvidence, Mission
from orchestrator.states import MissionStatus
from registry import config
from registry.models import SiteConfig
from tests import factories
from tests.e2e.processes import spawn, stop, wait_for
from tests.e2e.test_localnode_end_to_end import free_port, server_up

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


def test_turning_uploads_on_sends_snapshots_and_the_export_to_the_builtin_uploader(
    tmp_path: Path, settings: Any
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    evidence_dir, uploads_dir = tmp_path / "evidence", tmp_path / "uploads"
    settings.EVIDENCE_DIR = evidence_dir
    settings.LOCALNODE_ENABLED, settings.LOCALNODE_API_KEY = True, KEY
    env = {
        "LOCALNODE_ENABLED": "1",
        "LOCALNODE_API_KEY": KEY,
        "EVIDENCE_DIR": str(evidence_dir),
        "LOCALNODE_UPLOADS_DIR": str(uploads_dir),
    }
    web = spawn("runserver", f"127.0.0.1:{port}", "--noreload", log=tmp_path / "web.log", **env)
    runner = spawn("run_localnode", log=tmp_path / "localnode.log", **env)
    orchestrator = None
    try:
        wait_for(lambda: server_up(base), 120, "the web server")
        call_command("bootstrap", base_url=base, no_demo=True)  # worker, writer, uploader
        for key, value in {
            "session_tick_s": 0.3,
            "worker_tick_s": 0.3,
            "mission_tick_s": 0.3,
            "max_item_attempts": 1,
        }.items():
            config.set_value(key, value)
        SiteConfig.objects.filter(domain="*").update(engine="browser", items_per_job=10)
        good = [f"{base}/local/demo/p/{n}/" for n in (1, 2, 3)]
        bad = [f"{base}/local/demo/captcha/", f"{base}/local/demo/status/404/"]
        mission = actions.create_mission(name="Demo com uploads", urls=[*good, *bad])
        orchestrator = spawn("run_orchestrator", log=tmp_path / "orchestrator.log", **env)
        wait_for(
            lambda: (
                Mission.objects.get(pk=mission.pk).status
                in (MissionStatus.FINALIZADO, MissionStatus.ERRO)
            ),
            240,
            "the mission to finish",
        )
        mission.refresh_from_db()
        assert mission.status == MissionStatus.FINALIZADO
        evidence = list(ItemEvidence.objects.filter(item__mission=mission))
        assert {e.error_code for e in evidence} == {"blocked", "http_error"}
        for ev in evidence:  # the browser's screenshot, stored as a file
            assert (evidence_files.read(ev.screenshot_file) or b"").startswith(b"\x89PNG")
        assert not LocalUpload.objects.exists() and not mission.export_upload_url  # off

        admin = factories.UserFactory(role="admin")
        dashboard = Client()
        dashboard.force_login(admin)
        # Configurações saves a group at a time: the group holding uploads_enabled,
        # every other value as it is.
        index, keys = next(
            (i, settings_catalog.group_keys(i)[1])
            for i in range(1, len(settings_catalog.groups()) + 1)
            if "uploads_enabled" in settings_catalog.group_keys(i)[1]
        )
        current = config.load()
        form = {
            k: str(current[k]).lower() if isinstance(current[k], bool) else str(current[k])
            for k in keys
        }
        saved = dashboard.post(
            f"/configuracoes/grupo/{index}/", {**form, "uploads_enabled": "true"}
        )
        assert saved.status_code == 302 and config.get("uploads_enabled") is True

        wait_for(
            lambda: (
                LocalUpload.objects.count() == 3
                and Mission.objects.get(pk=mission.pk).export_upload_url != ""
            ),
            120,
            "two snapshots and the export at the built-in uploader",
        )
        mission.refresh_from_db()
        kinds = sorted(LocalUpload.objects.values_list("kind", flat=True))
        assert kinds == ["export", "snapshot", "snapshot"]
        links = [mission.export_upload_url] + [
            e.upload_url for e in ItemEvidence.objects.filter(item__mission=mission)
        ]
        assert all(link.startswith(f"{base}/local/arquivos/") for link in links)
        cookie = {"sessionid": dashboard.cookies["sessionid"].value}
        for link in links:
            assert httpx.get(link, follow_redirects=False).status_code == 302  # log in first
            got = httpx.get(link, cookies=cookie)
            assert got.status_code == 200, link
            if link == mission.export_upload_url:
                lines = got.text.splitlines()
                assert len(lines) == 3
                assert {json.loads(line)["url"] for line in lines} == set(good)
            else:
                snapshot = got.json()
                assert snapshot["mission_id"] == mission.pk
                assert (snapshot["screenshot_png_base64"] or "").startswith("iVBOR")  # a PNG
    finally:
        codes = [stop(p) for p in (orchestrator, runner, web) if p is not None]
    assert codes[0] == 0
