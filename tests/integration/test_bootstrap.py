from __future__ import annotations

from typing import Any as SettingsWrapper

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from localnode import engines
from orchestrator.models import Mission
from registry.models import SiteConfig, Worker, Writer

pytestmark = pytest.mark.django_db


def test_bootstrap_prints_a_fresh_admin_password_only_on_the_first_run(
    capsys: pytest.CaptureFixture[str], settings: SettingsWrapper
) -> None:
    settings.LOCALNODE_ENABLED = False
    call_command("bootstrap")
    first = capsys.readouterr().out
    call_command("bootstrap")
    second = capsys.readouterr().out

    assert "password:" in first
    assert "password:" not in second
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    password = first.split("password:")[1].split()[0]
    assert len(password) >= 12
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_bootstrap_registers_the_local_node_and_queues_demo_missions_once(
    settings: SettingsWrapper,
) -> None:
    settings.LOCALNODE_ENABLED = True
    call_command("bootstrap", base_url="http://127.0.0.1:8000")
    call_command("bootstrap", base_url="http://127.0.0.1:8000")

    worker = Worker.objects.get(name="local")
    assert worker.base_url == "http://127.0.0.1:8000/local/worker/api/v1"
    assert Writer.objects.get(name="local").is_default
    assert SiteConfig.objects.filter(domain="*").count() == 1
    assert Mission.objects.count() == 3
    assert sum(m.total_items for m in Mission.objects.all()) == 120


def test_demo_missions_point_at_the_local_demo_catalogue(settings: SettingsWrapper) -> None:
    settings.LOCALNODE_ENABLED = True
    call_command("bootstrap", base_url="http://127.0.0.1:8000")

    from orchestrator.models import MissionItem

    url = MissionItem.objects.order_by("id").values_list("url", flat=True).first()
    assert url == "http://127.0.0.1:8000/local/demo/p/1/"


def test_the_banner_says_where_to_go_at_the_chosen_address(
    capsys: pytest.CaptureFixture[str], settings: SettingsWrapper
) -> None:
    settings.LOCALNODE_ENABLED = True
    call_command("bootstrap", base_url="http://127.0.0.1:8010", banner=True, no_demo=True)
    out = capsys.readouterr().out

    assert "Dashboard      http://127.0.0.1:8010/" in out
    assert "login: admin" in out
    assert "http://127.0.0.1:8010/local/demo/p/1/" in out
    assert "http://127.0.0.1:8010/api/auth/token/" in out
    assert Worker.objects.get(name="local").base_url.startswith("http://127.0.0.1:8010/")


@pytest.mark.parametrize(
    ("reason", "engine", "says"),
    [
        (None, "browser", "Demo engine    browser (Chromium): blocked pages keep a screenshot"),
        (
            "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
            "http",
            "Demo engine    HTTP (Chromium is not installed at /usr/bin/chromium",
        ),
    ],
)
def test_the_demo_site_runs_in_the_browser_only_when_chromium_is_there(
    capsys: pytest.CaptureFixture[str],
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    reason: str | None,
    engine: str,
    says: str,
) -> None:
    monkeypatch.setattr(engines, "browser_unavailable_reason", lambda: reason)
    settings.LOCALNODE_ENABLED = True
    call_command("bootstrap", base_url="http://127.0.0.1:8000", banner=True)
    out = capsys.readouterr().out

    assert SiteConfig.objects.get(domain="127.0.0.1").engine == engine
    assert SiteConfig.for_domain("127.0.0.1").max_sessions == 2  # the rest inherits `*`
    assert f"the demo site runs with the {engine} engine" in out
    assert says in out


def test_an_operators_rule_for_the_demo_host_is_kept(settings: SettingsWrapper) -> None:
    settings.LOCALNODE_ENABLED = True
    SiteConfig.objects.create(domain="127.0.0.1", engine="http", max_sessions=1)
    call_command("bootstrap", base_url="http://127.0.0.1:8000")

    rule = SiteConfig.objects.get(domain="127.0.0.1")
    assert (rule.engine, rule.max_sessions) == ("http", 1)
