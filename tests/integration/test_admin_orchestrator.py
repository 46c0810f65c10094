"""Admin of the orchestrator: missions through actions, machine rows read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orchestrator.models import Mission, MissionItem, RecurringMission
from orchestrator.states import ItemStatus, MissionStatus
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    # Settings issue reported to the lead: whitenoise warns when STATIC_ROOT is absent.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


@pytest.fixture
def superuser() -> User:
    user = factories.UserFactory.create(username="root")
    user.is_superuser = True
    user.is_staff = True
    user.save()
    return user


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def changelist(model: str) -> str:
    return reverse(f"admin:orchestrator_{model}_changelist")


def test_mission_changelist_shows_status_badge_and_progress(admin_client: Client) -> None:
    factories.MissionFactory.create(
        name="Preços", status=MissionStatus.EXTRAINDO, total_items=4, done_items=2
    )

    response = admin_client.get(changelist("mission"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Preços" in html
    assert "Extraindo" in html
    assert "50% (2/4)" in html


def test_mission_changelist_filters_searches_and_drills_by_date(admin_client: Client) -> None:
    factories.MissionFactory.create(name="alpha", domain="a.com")
    factories.MissionFactory.create(name="beta", domain="b.com", status=MissionStatus.ERRO)

    by_status = admin_client.get(changelist("mission"), {"status__exact": "ERRO"})
    by_search = admin_client.get(changelist("mission"), {"q": "a.com"})

    assert "beta" in by_status.content.decode() and "alpha" not in by_status.content.decode()
    assert "alpha" in by_search.content.decode() and "beta" not in by_search.content.decode()
    assert admin_client.get(changelist("mission"), {"domain": "a.com"}).status_code == 200


def test_cancel_action_cancels_what_it_can_and_reports_the_rest(admin_client: Client) -> None:
    queued = factories.MissionFactory.create()
    done = factories.MissionFactory.create(status=MissionStatus.FINALIZADO)

    response = admin_client.post(
        changelist("mission"),
        {"action": "cancel_missions", "_selected_action": [queued.pk, done.pk]},
        follow=True,
    )

    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, done.status) == (MissionStatus.CANCELADO, MissionStatus.FINALIZADO)
    messages = [str(m) for m in response.context["messages"]]
    assert any("1 missão cancelada." in m for m in messages)
    assert any(f"#{done.pk}" in m for m in messages)


def test_retry_action_requeues_failed_missions(admin_client: Client) -> None:
    failed = factories.MissionFactory.create(status=MissionStatus.ERRO)

    admin_client.post(
        changelist("mission"), {"action": "retry_missions", "_selected_action": [failed.pk]}
    )

    failed.refresh_from_db()
    assert failed.status == MissionStatus.QUEUED


def test_mission_detail_shows_bounded_events_sessions_and_item_counts(
    admin_client: Client,
) -> None:
    mission = factories.MissionFactory.create(n_items=30)
    MissionItem.objects.filter(pk__in=mission.items.values("pk")[:5]).update(status=ItemStatus.DONE)
    for i in range(25):
        factories.MissionEventFactory.create(mission=mission, message=f"evento-{i:02d}")
    for _ in range(22):
        factories.BrowserSessionFactory.create(mission=mission)

    url = reverse("admin:orchestrator_mission_change", args=[mission.pk])
    response = admin_client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    assert "evento-24" in html and "evento-05" in html
    assert "evento-04" not in html  # only the latest 20
    assert "Mostrando 20 de 22" in html
    assert "<td>Concluído</td><td>5</td>" in html
    assert "<td>Pendente</td><td>25</td>" in html
    assert "https://example.com/p/0" not in html  # items are never listed inline


def test_mission_detail_query_count_does_not_grow_with_its_rows(admin_client: Client) -> None:
    mission = factories.MissionFactory.create(n_items=3)
    url = reverse("admin:orchestrator_mission_change", args=[mission.pk])

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    for _ in range(3):
        factories.MissionEventFactory.create(mission=mission)
        factories.BrowserSessionFactory.create(mission=mission)
    count()  # warm per-process caches (content types, permissions) first
    few = count()
    for _ in range(27):
        factories.MissionEventFactory.create(mission=mission)
        factories.BrowserSessionFactory.create(mission=mission)

    assert count() == few


def test_mission_state_fields_cannot_be_edited(admin_client: Client) -> None:
    mission = factories.MissionFactory.create(name="velho", priority=0)
    url = reverse("admin:orchestrator_mission_change", args=[mission.pk])

    admin_client.post(
        url, {"name": "novo", "priority": 5, "writer": "", "status": "FINALIZADO", "attempt": 9}
    )

    mission.refresh_from_db()
    assert (mission.name, mission.priority) == ("novo", 5)
    assert (mission.status, mission.attempt) == (MissionStatus.QUEUED, 1)


def test_adding_a_mission_goes_through_create_mission(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:orchestrator_mission_add"),
        {
            "name": "via admin",
            "domain": "",
            "priority": 0,
            "writer": "",
            "urls": "https://www.loja.com/a\nhttps://www.loja.com/b\nhttps://www.loja.com/a\n",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    mission = Mission.objects.get(name="via admin")
    assert mission.domain == "loja.com"
    assert mission.total_items == 2
    assert mission.created_by is not None and mission.created_by.username == "root"
    assert mission.events.filter(to_status=MissionStatus.QUEUED).exists()


def test_adding_a_mission_with_bad_urls_shows_the_errors(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:orchestrator_mission_add"),
        {"name": "x", "priority": 0, "urls": "https://ok.com/\nnot-a-url"},
    )

    assert response.status_code == 200
    assert "1: Must be an absolute http or https URL." in response.content.decode()
    assert not Mission.objects.exists()


def test_missions_cannot_be_deleted_in_the_admin(admin_client: Client) -> None:
    mission = factories.MissionFactory.create()

    response = admin_client.get(reverse("admin:orchestrator_mission_delete", args=[mission.pk]))

    assert response.status_code == 403


@pytest.mark.parametrize("model", ["missionitem", "browsersession", "missionevent"])
def test_machine_written_rows_are_read_only(admin_client: Client, model: str) -> None:
    session = factories.BrowserSessionFactory.create()
    row = {
        "missionitem": lambda: factories.MissionItemFactory.create(),
        "browsersession": lambda: session,
        "missionevent": lambda: factories.MissionEventFactory.create(),
    }[model]()

    assert admin_client.get(changelist(model)).status_code == 200
    change = admin_client.get(reverse(f"admin:orchestrator_{model}_change", args=[row.pk]))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert admin_client.get(reverse(f"admin:orchestrator_{model}_add")).status_code == 403


def test_session_admin_never_shows_proxy_credentials(admin_client: Client) -> None:
    session = factories.BrowserSessionFactory.create()

    pages = [
        admin_client.get(changelist("browsersession")),
        admin_client.get(reverse("admin:orchestrator_browsersession_change", args=[session.pk])),
    ]

    for page in pages:
        assert "proxy-secret-pass" not in page.content.decode()


def test_orchestrator_instances_are_read_only(admin_client: Client) -> None:
    instance = factories.OrchestratorInstanceFactory.create()

    change = admin_client.get(
        reverse("admin:orchestrator_orchestratorinstance_change", args=[instance.pk])
    )

    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert (
        admin_client.get(reverse("admin:orchestrator_orchestratorinstance_add")).status_code == 403
    )


def test_recurring_mission_is_created_with_validation_and_next_run(admin_client: Client) -> None:
    add = reverse("admin:orchestrator_recurringmission_add")
    base = {
        "name": "Diária",
        "timezone": "America/Sao_Paulo",
        "domain": "",
        "priority": 0,
        "writer": "",
        "enabled": "on",
        "urls_text": "https://loja.com/a\nhttps://loja.com/b",
    }

    bad = admin_client.post(add, {**base, "cron": "todo dia"})
    good = admin_client.post(add, {**base, "cron": "0 6 * * *"})

    assert bad.status_code == 200
    assert "cron" in bad.context["adminform"].form.errors
    assert good.status_code == 302
    row = RecurringMission.objects.get()
    assert row.urls == ["https://loja.com/a", "https://loja.com/b"]
    assert row.next_run_at is not None
