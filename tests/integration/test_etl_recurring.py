"""Recurring missions resume an ETL run (issue #16, "Mission creation (API, dashboard,
admin, create_missions, recurring missions)"): a domain without URLs resumes the
latest unfinished run of that domain at each due run, `etl_run` names one ("latest" or
an id). A template that could never create a mission is refused when saved (400 in the
API, form errors in the dashboard and admin, never a 500); a run that cannot be resumed
when due is a failed schedule run that says why."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from orchestrator import events, schedules
from orchestrator.etl_models import EtlRun
from orchestrator.models import Mission, OverlapPolicy, RecurringMission, ScheduleRun
from orchestrator.states import MissionStatus
from tests import factories
from tests.fakes.etl import FakeEtl

pytestmark = pytest.mark.django_db

RURL = "/api/recurring-missions/"
NOON = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    yield
    events._pending.wake.clear()


@pytest.fixture
def etl(fake_etl: FakeEtl, settings) -> FakeEtl:  # type: ignore[no-untyped-def]
    settings.ETL_API_ENDPOINT = fake_etl.base_url
    settings.ETL_API_KEY = fake_etl.api_key
    return fake_etl


def pages(n: int, prefix: str = "https://example.com/p/") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "Retomada diária", "cron": "0 6 * * *", "urls": [], **overrides}


def hourly(policy: str = OverlapPolicy.SKIP, **kw: Any) -> RecurringMission:
    return factories.RecurringMissionFactory(
        cron="0 * * * *", overlap_policy=policy, next_run_at=NOON, urls=[], **kw
    )


# --- API ---------------------------------------------------------------------------


def test_the_api_saves_a_schedule_with_a_domain_and_no_urls(
    etl: FakeEtl, operator_api: APIClient
) -> None:
    latest = operator_api.post(RURL, payload(domain="Example.com"), format="json")
    named = operator_api.post(RURL, payload(etl_run="run-7"), format="json")

    assert latest.status_code == 201, latest.content
    assert (latest.json()["domain"], latest.json()["etl_run"]) == ("example.com", "")
    assert named.status_code == 201, named.content
    assert named.json()["urls"] == [] and named.json()["etl_run"] == "run-7"
    assert etl.calls == []  # nothing asked of the ETL until a run is due


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({}, "domain"),
        ({"etl_run": "latest"}, "domain"),
        ({"urls": ["https://example.com/a"], "etl_run": "run-1"}, "etl_run"),
        ({"domain": "example.com", "etl_run": "não/é um id"}, "etl_run"),
    ],
)
def test_the_api_refuses_a_template_that_cannot_resume_with_a_400(
    etl: FakeEtl, operator_api: APIClient, overrides: dict[str, Any], field: str
) -> None:
    response = operator_api.post(RURL, payload(**overrides), format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not RecurringMission.objects.exists()


@pytest.mark.parametrize(
    "overrides",
    [{"domain": "example.com"}, {}, {"urls": ["https://example.com/a"], "etl_run": "run-1"}],
)
def test_without_an_etl_resuming_is_a_409_that_says_why(
    operator_api: APIClient, overrides: dict[str, Any]
) -> None:
    """As for a mission (`etl_not_configured`); absent and empty URLs alike."""
    for body in (payload(**overrides), {k: v for k, v in payload(**overrides).items() if v}):
        response = operator_api.post(RURL, body, format="json")

        assert response.status_code == 409, response.content
        error = response.json()["error"]
        assert error["code"] == "etl_not_configured"
        assert "sem ETL configurado" in error["message"]
    assert not RecurringMission.objects.exists()


def test_a_patch_keeps_the_rule(etl: FakeEtl, operator_api: APIClient) -> None:
    row = factories.RecurringMissionFactory(urls=pages(2))

    emptied = operator_api.patch(f"{RURL}{row.pk}/", {"urls": []}, format="json")
    assert emptied.status_code == 400 and "domain" in emptied.json()["error"]["fields"]
    resumed = operator_api.patch(
        f"{RURL}{row.pk}/", {"urls": [], "domain": "example.com"}, format="json"
    )
    assert resumed.status_code == 200, resumed.content
    row.refresh_from_db()
    assert (row.urls, row.domain) == ([], "example.com")


# --- due runs ----------------------------------------------------------------------


def test_a_due_run_resumes_the_domains_latest_run_and_the_next_takes_it_over(
    etl: FakeEtl,
) -> None:
    """cancel_previous: the previous mission owns the run when the next run is due; it
    is cancelled (freeing the run) and the new mission resumes the same run."""
    run = etl.add_run("example.com", pages(5), status="running", done=2)
    schedule = hourly(OverlapPolicy.CANCEL_PREVIOUS, domain="example.com")

    assert schedules.run_due(NOON) == 1
    first = Mission.objects.get(schedule=schedule)
    link = EtlRun.objects.get(mission=first)
    assert (link.run_id, link.origin) == (run.id, EtlRun.Origin.RESUMED)
    assert sorted(first.items.values_list("url", flat=True)) == pages(5)[2:]

    assert schedules.run_due(NOON + dt.timedelta(hours=1)) == 1
    first.refresh_from_db()
    second = Mission.objects.filter(schedule=schedule).exclude(pk=first.pk).get()
    assert first.status == MissionStatus.CANCELADO
    assert EtlRun.objects.get(mission=second).run_id == run.id
    assert EtlRun.objects.filter(run_id=run.id, live=True).get().mission_id == second.pk
    outcomes = list(ScheduleRun.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["created", "cancelled_previous"]


def test_a_due_run_resumes_a_named_run(etl: FakeEtl) -> None:
    etl.add_run("example.com", pages(3), status="running")
    named = etl.add_run("shop.example", pages(4, "https://shop.example/"), status="running")
    schedule = hourly(etl_run=named.id)

    assert schedules.run_due(NOON) == 1
    mission = Mission.objects.get(schedule=schedule)
    assert EtlRun.objects.get(mission=mission).run_id == named.id
    assert mission.domain == "shop.example" and mission.total_items == 4


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda etl: None, "etl_no_unfinished_run"),
        (lambda etl: etl.add_run("example.com", pages(2), status="running", done=2), None),
        (lambda etl: etl.down(), "etl_unavailable"),
    ],
)
def test_a_run_that_cannot_be_resumed_is_a_failed_schedule_run_with_the_reason(
    etl: FakeEtl, setup: Callable[[FakeEtl], object], code: str | None
) -> None:
    setup(etl)
    schedule = hourly(domain="example.com")

    assert schedules.run_due(NOON) == 0

    (run,) = ScheduleRun.objects.filter(schedule=schedule)
    assert run.outcome == ScheduleRun.Outcome.FAILED
    assert run.message.startswith("ETL: ")
    assert (code or "etl_") in run.message
    assert not Mission.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_run_at is not None and schedule.next_run_at > NOON


def test_the_run_is_fetched_before_the_schedule_row_is_locked(
    etl: FakeEtl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No database lock held across the ETL call: the lookup happens outside the
    schedule's transaction."""
    from django.db import connection

    from orchestrator import etl_outbox

    etl.add_run("example.com", pages(2), status="running")
    hourly(domain="example.com")
    seen: list[bool] = []
    real = etl_outbox.fetch_run
    # The test's own transaction wraps everything; count atomic blocks above it.
    depth = len(connection.atomic_blocks)

    def spy_depth(domain: str, etl_run: str | None) -> Any:
        seen.append(len(connection.atomic_blocks) > depth)
        return real(domain, etl_run)

    monkeypatch.setattr(etl_outbox, "fetch_run", spy_depth)
    assert schedules.run_due(NOON) == 1
    assert seen == [False]


# --- dashboard and admin -----------------------------------------------------------


def test_the_dashboard_form_saves_a_resuming_schedule_or_says_why_not(
    etl: FakeEtl, login: Callable[..., Client], settings: Any
) -> None:
    operator = login("operator")
    form = {"name": "Painel", "cron": "0 6 * * *", "timezone": "America/Sao_Paulo"}
    form |= {"priority": "0", "overlap_policy": "skip", "writer": "", "enabled": "on"}

    missing = operator.post("/recorrentes/nova/", {**form, "urls": ""})
    assert missing.status_code == 400
    assert "Informe o domínio" in missing.content.decode()

    saved = operator.post("/recorrentes/nova/", {**form, "urls": "", "domain": "example.com"})
    assert saved.status_code == 302
    assert RecurringMission.objects.get().domain == "example.com"
    page = operator.get(f"/recorrentes/{RecurringMission.objects.get().pk}/editar/")
    assert "Execução ETL a retomar" in page.content.decode()

    settings.ETL_API_ENDPOINT = ""
    refused = operator.post("/recorrentes/nova/", {**form, "urls": "", "domain": "x.com"})
    assert refused.status_code == 400
    assert "sem ETL configurado" in refused.content.decode()


def test_the_admin_form_saves_a_resuming_schedule_or_shows_a_form_error(
    etl: FakeEtl, admin_client: Client
) -> None:
    url = reverse("admin:orchestrator_recurringmission_add")
    form = {"name": "Admin", "cron": "0 6 * * *", "timezone": "America/Sao_Paulo"}
    form |= {"priority": 0, "writer": "", "enabled": "on", "overlap_policy": "skip"}

    both = admin_client.post(url, {**form, "urls_text": pages(1)[0], "etl_run": "run-1"})
    assert both.status_code == 200
    assert "não os dois" in both.content.decode()
    no_domain = admin_client.post(url, {**form, "urls_text": "", "domain": ""})
    assert no_domain.status_code == 200 and "Informe o domínio" in no_domain.content.decode()

    saved = admin_client.post(url, {**form, "urls_text": "", "etl_run": "run-9"})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    row = RecurringMission.objects.get()
    assert (row.urls, row.etl_run) == ([], "run-9")
