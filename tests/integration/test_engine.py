"""The engine end to end, one step at a time, against loopback fakes of the contracts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Sum
from django.utils import timezone

from orchestrator import actions
from orchestrator.models import BrowserSession, Mission, MissionEvent, MissionItem
from orchestrator.states import ErrorCode, ItemStatus, MissionStatus, SessionStatus
from registry import config
from registry.models import Proxy, Worker, Writer
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import Fleet, build_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(fake_worker: FakeWorker, fake_writer: FakeWriter) -> Fleet:
    return build_fleet(fake_worker, fake_writer)


def urls(n: int, prefix: str = "https://example.com/p/") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def assert_slots_match_sessions() -> None:
    for worker in Worker.objects.all():
        held = BrowserSession.objects.filter(worker=worker, holds_slot=True).count()
        assert worker.active_sessions == held, worker
    for proxy in Proxy.objects.all():
        held = BrowserSession.objects.filter(proxy=proxy, holds_slot=True).count()
        assert proxy.active_sessions == held, proxy


def test_a_mission_runs_from_queued_to_finalizado_with_every_checkpoint(fleet: Fleet) -> None:
    mission = actions.create_mission(name="Catálogo", urls=urls(12))

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)

    assert mission.atribuido_at and mission.extraindo_at
    assert mission.armazenando_at and mission.finalizado_at
    assert mission.atribuido_at <= mission.extraindo_at <= mission.armazenando_at
    assert mission.armazenando_at <= mission.finalizado_at
    assert (mission.done_items, mission.failed_items, mission.attempt) == (12, 0, 1)
    transitions = list(
        MissionEvent.objects.filter(mission=mission, kind="transition")
        .order_by("id")
        .values_list("to_status", flat=True)
    )
    assert transitions == ["QUEUED", "ATRIBUIDO", "EXTRAINDO", "ARMAZENANDO", "FINALIZADO"]
    assert fleet.fake_writer.stored_count(mission.pk) == 12
    assert fleet.fake_writer.completed[mission.pk]["total_records"] == 12


def test_records_reach_the_writer_exactly_once_and_sessions_are_closed(fleet: Fleet) -> None:
    mission = actions.create_mission(name="Uma vez", urls=urls(23))

    fleet.drive_to(mission, MissionStatus.FINALIZADO)
    fleet.drive(
        lambda: not BrowserSession.objects.filter(holds_slot=True).exists(),
        what="sessions closed",
    )

    assert fleet.fake_writer.stored_count(mission.pk) == 23
    assert fleet.fake_writer.duplicate_records_received == 0
    assert fleet.fake_worker.duplicate_job_requests == 0
    assert not fleet.fake_worker.active_sessions()
    assert set(BrowserSession.objects.values_list("status", flat=True)) == {"closed"}
    assert_slots_match_sessions()


def test_items_are_spread_over_sessions_in_jobs_of_items_per_job(fleet: Fleet) -> None:
    mission = actions.create_mission(name="Espalhar", urls=urls(20))

    fleet.drive_to(mission, MissionStatus.FINALIZADO)

    sessions = BrowserSession.objects.filter(mission=mission)
    assert sessions.count() == 2  # site max_sessions
    assert all(s.items_done > 0 for s in sessions)
    assert sessions.aggregate(n=Sum("jobs_done"))["n"] == 4  # 20 items / 5 per job
    assert len({s.proxy_external_id for s in sessions}) == 2


def test_a_failed_session_rotates_to_another_proxy_and_gives_its_items_back(
    fleet: Fleet,
) -> None:
    fleet.fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Rotação", urls=urls(20))
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").count() == 2)
    first, second = BrowserSession.objects.filter(mission=mission).order_by("id")

    fleet.fake_worker.fail_session(first.remote_id, "proxy_connect_failed")
    fleet.fake_worker.jobs_paused = False
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)

    first.refresh_from_db()
    assert first.status == SessionStatus.FAILED
    assert first.error_code == ErrorCode.SESSION_FAILED
    assert Proxy.objects.get(pk=first.proxy_id).failure_count >= 1
    replacements = BrowserSession.objects.filter(mission=mission).exclude(
        pk__in=[first.pk, second.pk]
    )
    assert replacements.exists()
    assert first.proxy_external_id not in {r.proxy_external_id for r in replacements}
    assert mission.done_items == 20
    assert mission.session_rotations == 1
    assert fleet.fake_writer.stored_count(mission.pk) == 20
    assert fleet.fake_writer.duplicate_records_received == 0


def test_items_blocked_on_one_proxy_are_retried_elsewhere(fleet: Fleet) -> None:
    fleet.fake_worker.blocked_proxies = {"px-0"}
    mission = actions.create_mission(name="Bloqueio", urls=urls(10))

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO, max_rounds=120)

    assert mission.done_items == 10
    if BrowserSession.objects.filter(mission=mission, proxy_external_id="px-0").exists():
        retried = [
            i
            for i in MissionItem.objects.filter(mission=mission, status=ItemStatus.DONE)
            if "px-0" in i.failed_proxies
        ]
        assert retried, "items blocked on px-0 were done on another proxy"
        assert all(i.attempts >= 2 for i in retried)


def test_404_items_fail_at_once_and_the_rest_finish(fleet: Fleet) -> None:
    mission = actions.create_mission(
        name="Mistura", urls=[*urls(4), "https://example.com/status/404"]
    )

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)

    failed = MissionItem.objects.get(mission=mission, url__endswith="/status/404")
    assert failed.status == ItemStatus.FAILED
    assert failed.error_code == ErrorCode.SCRAPE_HTTP_ERROR
    assert failed.attempts == 1
    assert (mission.done_items, mission.failed_items) == (4, 1)
    assert fleet.fake_writer.stored_count(mission.pk) == 4


def test_a_mission_whose_every_item_fails_ends_in_erro(fleet: Fleet) -> None:
    mission = actions.create_mission(
        name="Tudo falha", urls=[f"https://example.com/status/410/{i}" for i in range(3)]
    )

    mission = fleet.drive_to(mission, MissionStatus.ERRO)

    assert mission.error_code == ErrorCode.SCRAPE_ALL_ITEMS_FAILED
    assert mission.attempt == 1


def test_spent_rotations_retry_the_mission_then_it_succeeds(fleet: Fleet) -> None:
    config.set_value("max_session_rotations", 1)
    fleet.fake_worker.provider_error_all = True
    mission = actions.create_mission(name="Retry", urls=urls(6))

    fleet.drive(lambda: Mission.objects.get(pk=mission.pk).attempt == 2, what="second attempt")
    fleet.fake_worker.provider_error_all = False
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)

    assert mission.attempt == 2
    assert mission.done_items == 6
    retried = MissionEvent.objects.get(
        mission=mission, kind="transition", to_status="QUEUED", attempt=2
    )
    assert retried.error_code == ErrorCode.SESSION_ROTATIONS_EXHAUSTED


def test_retries_exhausted_end_in_erro_with_the_last_code(fleet: Fleet) -> None:
    config.set_value("max_session_rotations", 0)
    config.set_value("max_retries", 2)
    fleet.fake_worker.provider_error_all = True
    mission = actions.create_mission(name="Sem saída", urls=urls(3))

    mission = fleet.drive_to(mission, MissionStatus.ERRO, max_rounds=80)

    assert mission.attempt == 3  # 1 + max_retries
    assert mission.error_code == ErrorCode.SESSION_ROTATIONS_EXHAUSTED
    assert_slots_match_sessions()


def test_cancel_closes_the_mission_sessions_on_the_worker(fleet: Fleet) -> None:
    fleet.fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Cancelar", urls=urls(10))
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())

    actions.cancel_mission(mission, actor="tester")
    fleet.drive(
        lambda: not BrowserSession.objects.filter(holds_slot=True).exists(),
        what="sessions closed",
    )

    mission.refresh_from_db()
    assert mission.status == MissionStatus.CANCELADO
    assert not fleet.fake_worker.active_sessions()
    assert mission.pk not in fleet.fake_writer.completed
    assert_slots_match_sessions()


def test_pause_stops_new_claims_and_resume_continues(fleet: Fleet) -> None:
    actions.set_paused(True)
    mission = actions.create_mission(name="Pausa", urls=urls(4))

    fleet.step(3)
    mission.refresh_from_db()
    assert mission.status == MissionStatus.QUEUED

    actions.set_paused(False)
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)
    assert mission.done_items == 4


def test_without_capacity_a_mission_waits_in_queue_with_a_reason(fleet: Fleet) -> None:
    Worker.objects.update(enabled=False)
    mission = actions.create_mission(name="Espera", urls=urls(3))

    fleet.step(2)

    mission.refresh_from_db()
    assert mission.status == MissionStatus.QUEUED
    assert mission.wait_reason.startswith(ErrorCode.ALLOC_NO_WORKER)


def test_a_writer_outage_delays_the_mission_without_burning_retries(fleet: Fleet) -> None:
    fleet.fake_writer.fail_next_requests(6, status=503)
    mission = actions.create_mission(name="Writer fora", urls=urls(5))
    fleet.drive(
        lambda: Writer.objects.get().circuit_open_until is not None, what="the breaker opens"
    )
    mission.refresh_from_db()
    assert mission.wait_reason.startswith("WRITER_UNAVAILABLE")
    # Calls stop while the breaker is open. The period is held open here: three ticks on
    # a loaded machine can outlast the configured 1 s, and a probe would then be right.
    Writer.objects.update(circuit_open_until=timezone.now() + dt.timedelta(minutes=10))
    calls = len(fleet.fake_writer.calls)
    fleet.step(3)
    assert len(fleet.fake_writer.calls) == calls

    def finalized_or_probe() -> bool:
        if Mission.objects.get(pk=mission.pk).status == MissionStatus.FINALIZADO:
            return True
        # End the open period now (no wall-clock wait): the next tick may probe.
        now = timezone.now()
        Writer.objects.filter(circuit_open_until__gt=now).update(circuit_open_until=now)
        return False

    fleet.drive(finalized_or_probe, max_rounds=40, what="FINALIZADO after the outage")
    mission.refresh_from_db()

    assert mission.attempt == 1
    assert fleet.fake_writer.stored_count(mission.pk) == 5


def test_a_stuck_session_is_replaced(fleet: Fleet) -> None:
    config.set_value("lease_s", 5)
    config.set_value("session_stuck_after_s", 5)
    fleet.fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Travada", urls=urls(5))
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    session = BrowserSession.objects.get(mission=mission, job_status="running")
    fleet.fake_worker.stick_session(session.remote_id)
    fleet.fake_worker.jobs_paused = False

    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)

    session.refresh_from_db()
    assert session.status == SessionStatus.STUCK
    assert not session.holds_slot
    assert mission.done_items == 5


def test_a_retried_mission_resumes_with_only_its_pending_items(fleet: Fleet) -> None:
    fleet.site.max_sessions = 1
    fleet.site.save()
    fleet.fake_worker.jobs_paused = True
    mission = actions.create_mission(name="Retomar", urls=urls(6))
    fleet.drive(lambda: BrowserSession.objects.filter(job_status="running").exists())
    first_job = fleet.fake_worker.job_by_key(fleet.fake_worker.job_keys_seen[0])
    assert first_job is not None
    fleet.fake_worker.advance_job(first_job.id)
    fleet.drive(lambda: Mission.objects.get(pk=mission.pk).done_items == 5)

    actions.cancel_mission(mission, actor="op")
    actions.retry_mission(mission, actor="op")
    fleet.fake_worker.jobs_paused = False
    mission = fleet.drive_to(mission, MissionStatus.FINALIZADO)

    later = [fleet.fake_worker.job_by_key(k) for k in fleet.fake_worker.job_keys_seen[1:]]
    scraped_again = {i["url"] for job in later if job for i in job.items}
    assert scraped_again == {"https://example.com/p/5"}
    assert (mission.done_items, mission.attempt) == (6, 1)
    assert fleet.fake_writer.stored_count(mission.pk) == 6


def test_counts_of_slots_always_equal_what_sessions_hold(fleet: Fleet) -> None:
    missions = [
        actions.create_mission(name=f"M{i}", urls=urls(7, f"https://ex{i}.com/")) for i in range(3)
    ]
    for _ in range(6):
        fleet.step()
        assert_slots_match_sessions()
    for mission in missions:
        fleet.drive_to(mission, MissionStatus.FINALIZADO)
