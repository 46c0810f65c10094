"""The ETL system of record on every path (issue #16, docs/contracts/etl-api.md revised),
against the loopback FakeEtl: one run per live mission, resume only when asked,
progress from the durable outbox, every end finalized once with its status."""

from __future__ import annotations

import datetime as dt
import os
import random
import time

import pytest
from django.utils import timezone

from orchestrator import actions, etl_outbox
from orchestrator.etl_models import EtlRun, EtlStep
from orchestrator.managers.etl import EtlManager
from orchestrator.models import Mission, MissionEvent
from orchestrator.states import MissionStatus
from registry import config
from tests.fakes.etl import FakeEtl
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import Fleet, build_fleet

pytestmark = pytest.mark.django_db

FAST_ETL = {"etl_retry_base_s": 0.01, "etl_retry_cap_s": 0.05}


@pytest.fixture
def fleet(fake_worker: FakeWorker, fake_writer: FakeWriter) -> Fleet:
    return build_fleet(fake_worker, fake_writer, overrides=FAST_ETL)


@pytest.fixture
def etl(fake_etl: FakeEtl, settings) -> FakeEtl:  # type: ignore[no-untyped-def]
    settings.ETL_API_ENDPOINT = fake_etl.base_url
    settings.ETL_API_KEY = fake_etl.api_key
    return fake_etl


def urls(n: int, prefix: str = "https://example.com/p/") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def run_of(mission: Mission) -> EtlRun:
    return EtlRun.objects.get(mission=mission)


def drain(fleet: Fleet) -> None:
    """Run passes until the outbox is empty (the ETL must be up)."""
    fleet.drive(lambda: not EtlStep.objects.exists(), 30, "empty ETL outbox")


def assert_applied_once(etl: FakeEtl) -> None:
    """No step was applied twice: every keyed request changed state once."""
    keys = [key for _, _, key in etl.applied]
    assert all(keys), "every state-changing call carries an Idempotency-Key"
    assert len(keys) == len(set(keys))
    assert etl.key_conflicts == []


def test_a_mission_with_urls_creates_its_own_run_never_another_missions(
    fleet: Fleet, etl: FakeEtl
) -> None:
    """Case 1: an unfinished run of the domain sharing no URL is left alone."""
    other = etl.add_run("example.com", urls(3, "https://example.com/other/"), status="running")
    mission = actions.create_mission(
        name="Própria", urls=[*urls(6), "https://example.com/status/404"]
    )

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    drain(fleet)

    link = run_of(mission)
    assert link.origin == EtlRun.Origin.CREATED and link.run_id != other.id
    assert mission.etl_run_id == link.run_id
    run = etl.runs[link.run_id]
    assert [i["url"] for i in run.items] == [*urls(6), "https://example.com/status/404"]
    assert sum(i["done"] for i in run.items) == 6
    stats = etl.finalized[run.id]
    assert {k: stats[k] for k in ("total", "done", "failed", "status")} == {
        "total": 7,
        "done": 6,
        "failed": 1,
        "status": "completed",
    }
    assert other.id not in etl.finalized and other.status == "running"
    assert not any(i["done"] for i in other.items)
    assert_applied_once(etl)


def test_two_missions_of_one_domain_created_together_get_two_runs(
    fleet: Fleet, etl: FakeEtl
) -> None:
    """Case 2: no shared run id, each run holds its own URLs, each finalized once."""
    a = actions.create_mission(name="A", urls=urls(4, "https://example.com/a/"))
    b = actions.create_mission(name="B", urls=urls(5, "https://example.com/b/"))

    for mission in (a, b):
        fleet.drive_to(mission, MissionStatus.FINALIZADO)
    drain(fleet)

    run_a, run_b = run_of(a).run_id, run_of(b).run_id
    assert run_a and run_b and run_a != run_b
    assert {i["url"] for i in etl.runs[run_a].items} == set(urls(4, "https://example.com/a/"))
    assert {i["url"] for i in etl.runs[run_b].items} == set(urls(5, "https://example.com/b/"))
    assert etl.finalize_count == {run_a: 1, run_b: 1}
    assert all(i["done"] for r in (run_a, run_b) for i in etl.runs[r].items)
    assert_applied_once(etl)


def test_cancel_and_erro_finalize_their_runs_with_status(fleet: Fleet, etl: FakeEtl) -> None:
    """Case 3: ERRO and CANCELADO end their runs, which then capture nobody."""
    config.set_value("max_retries", 0)
    cancelled = actions.create_mission(name="Cancelada", urls=urls(3))
    failed = actions.create_mission(
        name="Erro", urls=[f"https://example.com/status/404?n={i}" for i in range(3)]
    )
    drain(fleet)
    actions.cancel_mission(cancelled)
    fleet.drive_to(failed, MissionStatus.ERRO)
    drain(fleet)

    assert etl.finalized[run_of(cancelled).run_id]["status"] == "cancelled"
    assert etl.runs[run_of(cancelled).run_id].status == "cancelled"
    stats = etl.finalized[run_of(failed).run_id]
    assert (stats["status"], stats["failed"], stats["done"]) == ("failed", 3, 0)
    assert not EtlRun.objects.filter(live=True, mission__in=[cancelled, failed]).exists()

    later = actions.create_mission(name="Depois", urls=urls(2, "https://example.com/new/"))
    drain(fleet)
    assert run_of(later).run_id not in (run_of(cancelled).run_id, run_of(failed).run_id)
    assert_applied_once(etl)


def test_etl_down_at_creation_then_back_creates_the_run_and_sends_everything_once(
    fleet: Fleet, etl: FakeEtl
) -> None:
    """Case 4 (and 5): the mission runs meanwhile; a failed step is retried until it
    is acknowledged, and the mission's events say so."""
    etl.down()
    mission = actions.create_mission(name="ETL fora", urls=urls(4))
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    assert run_of(mission).run_id == "" and run_of(mission).failing_since is not None
    assert EtlStep.objects.filter(mission=mission, kind="finalize").exists()

    etl.up()
    drain(fleet)

    link = run_of(mission)
    assert link.run_id and link.failing_since is None
    assert etl.finalize_count == {link.run_id: 1}
    assert etl.finalized[link.run_id]["done"] == 4
    assert all(i["done"] for i in etl.runs[link.run_id].items)
    assert_applied_once(etl)
    kinds = list(
        MissionEvent.objects.filter(mission=mission, data__etl__isnull=False)
        .order_by("id")
        .values_list("data__etl", flat=True)
    )
    assert kinds[0] == "failed" and {"created", "recovered", "finalized"} <= set(kinds)


def test_item_updates_reach_the_etl_while_the_mission_runs(fleet: Fleet, etl: FakeEtl) -> None:
    """Case 6: progress in batches as pages are saved, before the mission ends."""
    mission = actions.create_mission(name="Progresso", urls=urls(12))
    fleet.drive(
        lambda: any(i["done"] for r in etl.runs.values() for i in r.items),
        what="a done item in the ETL",
    )
    assert Mission.objects.get(pk=mission.pk).status != MissionStatus.FINALIZADO
    assert etl.finalized == {}
    fleet.drive_to(mission, MissionStatus.FINALIZADO)
    drain(fleet)
    assert sum(len(batch) for batch in etl.item_updates) == 12
    assert_applied_once(etl)


def test_a_429_is_retried_no_sooner_than_its_retry_after(fleet: Fleet, etl: FakeEtl) -> None:
    mission = actions.create_mission(name="429", urls=urls(2))
    etl.throttle_next(1, 30)
    now = timezone.now()

    counts = etl_outbox.sync(now, config.load(), rng=random.Random(1))

    step = EtlStep.objects.get(mission=mission, kind="create")
    assert counts == {"failed": 1} and step.attempts == 1
    assert step.next_attempt_at is not None
    assert step.next_attempt_at >= now + dt.timedelta(seconds=30)
    assert etl_outbox.sync(now + dt.timedelta(seconds=5), config.load()) == {}
    assert etl_outbox.sync(now + dt.timedelta(seconds=31), config.load()) == {"created": 1}
    assert_applied_once(etl)


def test_a_resumed_run_is_asked_for_and_its_done_items_are_not_scraped_again(
    fleet: Fleet, etl: FakeEtl
) -> None:
    pages = urls(6)
    run = etl.add_run("example.com", pages, status="running", done=4)

    mission = actions.create_mission(name="Retomar", urls=[], domain="example.com")
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    drain(fleet)

    link = run_of(mission)
    assert (link.run_id, link.origin) == (run.id, EtlRun.Origin.RESUMED)
    scraped = {i["url"] for job in fleet.fake_worker.jobs.values() for i in job.items}
    assert scraped == set(pages[4:])
    assert mission.total_items == 2 and mission.done_items == 2
    assert all(i["done"] for i in etl.runs[run.id].items)
    assert etl.finalize_count == {run.id: 1}
    assert not [c for c in etl.calls if c.method == "POST" and c.path == "/scrape-runs"]


def test_resuming_is_refused_with_a_clear_4xx_or_503(etl: FakeEtl) -> None:
    run = etl.add_run("example.com", urls(3), status="running")
    first = actions.create_mission(name="Dona", urls=[], domain="example.com", etl_run="latest")
    assert run_of(first).run_id == run.id

    with pytest.raises(etl_outbox.EtlRefused) as owned:
        actions.create_mission(name="Segunda", urls=[], domain="example.com")
    assert (owned.value.status_code, owned.value.code) == (409, "etl_run_owned")
    assert f"#{first.pk}" in owned.value.message

    with pytest.raises(etl_outbox.EtlRefused) as none:
        actions.create_mission(name="Nada", urls=[], domain="other.example")
    assert (none.value.status_code, none.value.code) == (409, "etl_no_unfinished_run")

    etl.down()
    with pytest.raises(etl_outbox.EtlRefused) as down:
        actions.create_mission(name="Fora", urls=[], etl_run=run.id)
    assert down.value.status_code == 503
    assert Mission.objects.count() == 1


def test_a_step_recorded_before_a_crash_is_sent_after_restart_once(
    fleet: Fleet, etl: FakeEtl
) -> None:
    """The orchestrator dies between the state change and the ETL call: the step is in
    the outbox (same transaction), and a new process sends it once."""
    mission = actions.create_mission(name="Queda", urls=urls(3))
    drain(fleet)
    actions.cancel_mission(mission)  # committed; no ETL call made by it
    assert EtlStep.objects.filter(mission=mission, kind="finalize").count() == 1

    restarted = EtlManager("restarted-process")
    restarted.tick()
    restarted.tick()
    EtlManager("another-process").tick()

    assert etl.finalize_count == {run_of(mission).run_id: 1}
    assert not EtlStep.objects.exists()
    assert_applied_once(etl)


def test_no_etl_configured_records_nothing(fleet: Fleet) -> None:
    mission = actions.create_mission(name="Sem ETL", urls=urls(2))
    fleet.drive_to(mission, MissionStatus.FINALIZADO)
    assert not EtlRun.objects.exists() and not EtlStep.objects.exists()


def test_the_mission_page_shows_the_run_and_its_sync_state(
    fleet: Fleet,
    etl: FakeEtl,
    login,  # type: ignore[no-untyped-def]
) -> None:
    etl.down()
    mission = actions.create_mission(name="Painel", urls=urls(2))
    fleet.step()
    body = login("viewer").get(f"/missoes/{mission.pk}/").content.decode()
    assert "Execução ETL" in body and "ainda não criada" in body and "atrasado desde" in body

    etl.up()
    fleet.drive_to(mission, MissionStatus.FINALIZADO)
    drain(fleet)
    body = login("viewer").get(f"/missoes/{mission.pk}/").content.decode()
    assert run_of(mission).run_id in body and "(criada)" in body
    assert "em dia" in body and "Finalizada no ETL: concluída" in body


def test_the_api_creates_a_resuming_mission_and_refuses_clearly(
    etl: FakeEtl,
    admin_api,  # type: ignore[no-untyped-def]
) -> None:
    run = etl.add_run("example.com", urls(3), status="running", done=1)

    created = admin_api.post(
        "/api/missions/", {"name": "API", "domain": "example.com"}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["counters"]["total_items"] == 2 and body["etl_run_id"] == run.id

    owned = admin_api.post("/api/missions/", {"name": "API 2", "etl_run": run.id}, format="json")
    assert owned.status_code == 409
    assert owned.json()["error"]["code"] == "etl_run_owned"

    etl.down()
    down = admin_api.post(
        "/api/missions/", {"name": "API 3", "etl_run": "latest", "domain": "x.com"}, format="json"
    )
    assert down.status_code == 503 and down.json()["error"]["code"] == "etl_unavailable"


def test_an_etl_outage_during_20_missions_loses_and_repeats_nothing(
    fleet: Fleet, etl: FakeEtl
) -> None:
    """ETL down (connection refused) for ETL_OUTAGE_S seconds (3 by default; 60 for the
    figures in docs/reliability.md, with ETL_DEFAULT_BACKOFF=1 for the shipped retry
    settings) while 20 missions run and end: 15 FINALIZADO on two domains, 3 CANCELADO,
    2 ERRO. Once it is back every run ends with its mission's counts and status, each
    step applied once."""
    outage = float(os.environ.get("ETL_OUTAGE_S", "3"))
    if os.environ.get("ETL_DEFAULT_BACKOFF"):
        for key in FAST_ETL:
            config.set_value(key, config.KEYS[key].default)
    config.set_value("max_retries", 0)
    started = time.monotonic()
    etl.down()
    missions = [
        actions.create_mission(
            name=f"Lote {n}",
            urls=[
                *urls(6, f"https://{'example.com' if n % 2 else 'shop.example'}/m{n}/"),
                f"https://example.com/status/404?m={n}",
            ],
        )
        for n in range(15)
    ]
    doomed = [
        actions.create_mission(
            name=f"Erro {n}", urls=[f"https://example.com/status/404?e={n}&i={i}" for i in range(3)]
        )
        for n in range(2)
    ]
    cancelled = [
        actions.create_mission(name=f"Cancelar {n}", urls=urls(4, f"https://example.com/c{n}/"))
        for n in range(3)
    ]
    fleet.step()
    for mission in cancelled:
        actions.cancel_mission(mission)
    everyone = [*missions, *doomed, *cancelled]
    fleet.drive(
        lambda: (
            not Mission.objects.exclude(
                status__in=[MissionStatus.FINALIZADO, MissionStatus.ERRO, MissionStatus.CANCELADO]
            ).exists()
        ),
        200,
        "every mission ended",
    )
    ended_s = time.monotonic() - started
    while time.monotonic() - started < outage:
        fleet.step()  # the outbox keeps failing meanwhile
        time.sleep(0.2)
    backlog = EtlStep.objects.count()
    failed_events = list(
        MissionEvent.objects.filter(data__etl="failed").values_list("data", flat=True)
    )
    failures = sum(int(d["failures"]) for d in failed_events)
    # One event per mission for the outage, however many attempts failed.
    assert (
        len(failed_events)
        == MissionEvent.objects.filter(data__etl="failed").values("mission").distinct().count()
    )
    etl.up()
    back = time.monotonic()
    rounds = 0
    while EtlStep.objects.exists():
        rounds += 1
        assert rounds < 5000, "outbox never drained"
        fleet.step()
        time.sleep(0.05)
    caught_up_s = time.monotonic() - back

    expected: dict[str, str] = {
        MissionStatus.FINALIZADO: "completed",
        MissionStatus.ERRO: "failed",
        MissionStatus.CANCELADO: "cancelled",
    }
    for mission in everyone:
        mission.refresh_from_db()
        run_id = run_of(mission).run_id
        stats = etl.finalized[run_id]
        assert etl.finalize_count[run_id] == 1, mission
        assert (stats["total"], stats["done"], stats["failed"], stats["status"]) == (
            mission.total_items,
            mission.done_items,
            mission.failed_items,
            expected[mission.status],
        ), mission
        items = {i["url"]: i for i in etl.runs[run_id].items}
        for item in mission.items.all():
            assert items[item.url]["done"] == (item.status == "done"), item.url
    assert {m.status for m in missions} == {MissionStatus.FINALIZADO}
    assert {m.status for m in doomed} == {MissionStatus.ERRO}
    assert_applied_once(etl)
    assert len(etl.runs) == 20
    print(
        f"\nETL outage figures: outage {outage:.0f} s, missions ended after {ended_s:.1f} s, "
        f"backlog {backlog} steps, {failures} failed attempts in {len(failed_events)} events, "
        f"caught up {caught_up_s:.1f} s after the ETL returned ({rounds} passes), "
        f"{len(etl.applied)} steps applied, {etl.replays} replays, "
        f"{len(etl.key_conflicts)} key conflicts, {sum(etl.finalize_count.values())} finalizes"
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_missions_of_one_domain_at_once_on_postgres(etl: FakeEtl) -> None:
    """Created from two threads at the same time: two runs, no shared item. Two
    resumes of one run at the same time: one owns it, the other gets a clear 409."""
    import threading

    from django.db import connection

    from orchestrator.managers.etl import EtlManager

    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def create(name: str, **kwargs: object) -> None:
        try:
            barrier.wait()
            outcomes.append(actions.create_mission(name=name, **kwargs))  # type: ignore[arg-type]
        except etl_outbox.EtlRefused as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(
            target=create, args=(n,), kwargs={"urls": urls(3, f"https://example.com/{n}/")}
        )
        for n in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    EtlManager("pg-test").tick()
    runs = {run_of(m).run_id for m in outcomes if isinstance(m, Mission)}
    assert len(runs) == 2 and "" not in runs
    items = [i["url"] for r in runs for i in etl.runs[r].items]
    assert len(items) == len(set(items)) == 6

    run = etl.add_run("resume.example", urls(3, "https://resume.example/"), status="running")
    outcomes.clear()
    threads = [
        threading.Thread(target=create, args=(n,), kwargs={"urls": [], "etl_run": run.id})
        for n in ("r1", "r2")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners = [m for m in outcomes if isinstance(m, Mission)]
    refused = [e for e in outcomes if isinstance(e, etl_outbox.EtlRefused)]
    assert len(owners) == 1 and len(refused) == 1
    assert (refused[0].status_code, refused[0].code) == (409, "etl_run_owned")
    assert EtlRun.objects.filter(run_id=run.id, live=True).count() == 1


def test_the_dashboard_form_resumes_a_domains_run_or_says_why_not(
    etl: FakeEtl,
    login,  # type: ignore[no-untyped-def]
) -> None:
    run = etl.add_run("example.com", urls(3), status="running", done=2)
    operator = login("operator")

    created = operator.post(
        "/missoes/nova/", {"name": "Painel", "etl_domain": "example.com", "priority": 0}
    )
    assert created.status_code == 302
    mission = Mission.objects.get()
    assert (mission.total_items, run_of(mission).run_id) == (1, run.id)

    refused = operator.post(
        "/missoes/nova/", {"name": "De novo", "etl_domain": "example.com", "priority": 0}
    )
    assert refused.status_code == 200
    assert f"pertence à missão #{mission.pk}" in refused.content.decode()


def test_repeated_failures_are_one_event_per_outage_and_one_when_back(etl: FakeEtl) -> None:
    """While the ETL is down the outbox retries every few seconds: the mission's events
    get one "ETL indisponível" row (its count and last error updated), then one
    "ETL de volta; N passos enviados" once it answers."""
    mission = actions.create_mission(name="Surto", urls=urls(2))
    EtlStep.objects.create(
        mission=mission,
        kind="finalize",
        key="k-final",
        created_at=timezone.now(),
        payload={"total": 2, "done": 0, "failed": 0, "duration_s": 1.0, "status": "cancelled"},
    )
    etl.down()
    start = timezone.now()
    for n in range(6):
        etl_outbox.sync(start + dt.timedelta(minutes=n), config.load(), rng=random.Random(n))

    (failed,) = MissionEvent.objects.filter(mission=mission, data__etl="failed")
    assert failed.data["failures"] == 6 and failed.data["step"] == "create"
    assert failed.created_at == start
    assert failed.data["last_attempt_at"] == (start + dt.timedelta(minutes=5)).isoformat()
    assert "6 tentativas falharam" in failed.message
    assert failed.data["last_error"].startswith("connect_error")

    etl.up()
    assert etl_outbox.sync(start + dt.timedelta(minutes=7), config.load()) == {
        "created": 1,
        "finalized": 1,
    }
    (back,) = MissionEvent.objects.filter(mission=mission, data__etl="recovered")
    assert back.message.startswith("ETL de volta; 2 passos enviados (indisponível desde")
    assert back.data["failures"] == 6
    assert MissionEvent.objects.filter(mission=mission, data__etl="failed").count() == 1

    # A second outage is a new event.
    EtlStep.objects.create(
        mission=mission,
        kind="items",
        key="k-items",
        created_at=timezone.now(),
        payload={"items": [[urls(2)[0], "done", ""]]},
    )
    etl.down()
    etl_outbox.sync(start + dt.timedelta(minutes=8), config.load())
    assert MissionEvent.objects.filter(mission=mission, data__etl="failed").count() == 2


def test_the_api_shows_the_run_link_and_its_sync_state(
    fleet: Fleet,
    etl: FakeEtl,
    admin_api,  # type: ignore[no-untyped-def]
    django_assert_max_num_queries,  # type: ignore[no-untyped-def]
) -> None:
    """`etl` on each mission: run id (null until created), created vs resumed, sync
    state (em dia / atrasado desde … / com erro …) and the steps still owed."""
    etl.down()
    mission = actions.create_mission(name="API ETL", urls=urls(2))
    fleet.step()

    body = admin_api.get(f"/api/missions/{mission.pk}/").json()["etl"]
    assert body["run_id"] is None and body["origin"] == "created" and body["owner"] is True
    assert body["sync"] == "behind" and body["sync_display"].startswith("atrasado desde ")
    assert body["failing_since"] is not None and body["pending_steps"] >= 1

    etl.up()
    fleet.drive_to(mission, MissionStatus.FINALIZADO)
    drain(fleet)
    body = admin_api.get(f"/api/missions/{mission.pk}/").json()["etl"]
    assert body["run_id"] == run_of(mission).run_id and body["origin_display"] == "criada"
    assert (body["sync"], body["sync_display"], body["pending_steps"]) == (
        "up_to_date",
        "em dia",
        0,
    )
    assert (body["owner"], body["finalized_status"]) == (False, "completed")

    resumed_run = etl.add_run(
        "resume.example", urls(3, "https://resume.example/"), status="running"
    )
    resumed = actions.create_mission(name="Retomada", urls=[], etl_run=resumed_run.id)
    EtlRun.objects.filter(mission=resumed).update(last_error="invalid_request: recusado")
    with django_assert_max_num_queries(12):
        listed = admin_api.get("/api/missions/").json()["results"]
    by_id = {m["id"]: m["etl"] for m in listed}
    assert (
        by_id[resumed.pk]["origin"] == "resumed" and by_id[resumed.pk]["run_id"] == resumed_run.id
    )
    assert by_id[resumed.pk]["sync"] == "error"
    assert by_id[resumed.pk]["sync_display"] == "com erro: invalid_request: recusado"

    plain = actions.create_mission(name="Sem ETL", urls=urls(1, "https://x.example/"))
    EtlRun.objects.filter(mission=plain).delete()
    assert admin_api.get(f"/api/missions/{plain.pk}/").json()["etl"] is None


class Killed(BaseException):
    """The process dies (not an Exception: nothing in the outbox may catch it)."""


@pytest.mark.parametrize("kind", ["create", "finalize"])
def test_a_process_killed_after_the_etl_applied_a_step_before_deleting_it_sends_it_once(
    etl: FakeEtl, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The orchestrator dies between the ETL's acknowledgement and the step's deletion
    (its lease still held): after the lease expires another process sends the step again
    with the same Idempotency-Key, and the ETL applies it once (one run, one finalize)."""
    mission = actions.create_mission(name="Morta", urls=urls(2))
    now = timezone.now()
    if kind == "finalize":
        assert etl_outbox.sync(now, config.load()) == {"created": 1}
        actions.cancel_mission(mission)
    real_ok = etl_outbox._ok

    def die(link, steps, when, **fields):  # type: ignore[no-untyped-def]
        raise Killed

    monkeypatch.setattr(etl_outbox, "_ok", die)
    with pytest.raises(Killed):
        etl_outbox.sync(now, config.load(), owner="dead")
    monkeypatch.setattr(etl_outbox, "_ok", real_ok)
    # A killed process runs no `finally`: its lease stays until it expires.
    EtlRun.objects.filter(mission=mission).update(
        locked_by="dead", locked_until=now + dt.timedelta(seconds=etl_outbox.LEASE_S)
    )
    assert EtlStep.objects.filter(mission=mission, kind=kind).count() == 1

    assert etl_outbox.sync(now + dt.timedelta(seconds=1), config.load(), owner="new") == {}
    later = now + dt.timedelta(seconds=etl_outbox.LEASE_S + 1)
    sent = etl_outbox.sync(later, config.load(), owner="new")

    assert sent == {"created": 1} if kind == "create" else {"finalized": 1}
    assert not EtlStep.objects.filter(mission=mission).exists()
    assert len(etl.runs) == 1 and etl.replays == 1
    run_id = run_of(mission).run_id
    assert run_id in etl.runs
    if kind == "finalize":
        assert etl.finalize_count == {run_id: 1}
        assert etl.finalized[run_id]["status"] == "cancelled"
    assert_applied_once(etl)
