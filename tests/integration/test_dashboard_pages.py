"""Dashboard: access per role, the overview, the execution page and live partials."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.models import MissionEvent
from orchestrator.states import MissionStatus
from registry import config
from tests import factories

pytestmark = pytest.mark.django_db

PAGES = [
    "/",
    "/missoes/",
    "/missoes/nova/",
    "/execucao/",
    "/recursos/",
    "/recursos/workers/",
    "/recursos/writers/",
    "/recursos/uploaders/",
    "/recursos/proxies/",
    "/estrategias/",
    "/configuracoes/",
    "/webhooks/",
    "/recorrentes/",
    "/visao-geral/parcial/",
    "/missoes/parcial/",
    "/execucao/parcial/",
]


@pytest.fixture
def login(client: Client) -> Callable[[str | None], Client]:
    def make(role: str | None) -> Client:
        user = factories.UserFactory(role=role)
        client.force_login(user)
        return client

    return make


@pytest.mark.parametrize("url", [*PAGES, "/missoes/1/"])
def test_anonymous_is_redirected_to_login(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_login_page_is_in_portuguese_and_logs_in(client: Client) -> None:
    factories.UserFactory(username="ana", role="viewer")
    page = client.get("/login/")
    assert page.status_code == 200
    assert "Entrar" in page.content.decode()
    bad = client.post("/login/", {"username": "ana", "password": "errada"})
    assert bad.status_code == 200
    assert "senha corretos" in bad.content.decode()
    ok = client.post("/login/", {"username": "ana", "password": "senha-forte-123"})
    assert ok.status_code == 302 and ok["Location"] == "/"


def test_logout_is_a_post_and_returns_to_login(login: Callable[[str | None], Client]) -> None:
    client = login("viewer")
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("url", [p for p in PAGES if p != "/missoes/nova/"])
def test_viewer_sees_every_page(login: Callable[[str | None], Client], url: str) -> None:
    response = login("viewer").get(url, follow=True)
    assert response.status_code == 200


def test_user_without_role_is_forbidden(login: Callable[[str | None], Client]) -> None:
    assert login(None).get("/").status_code == 403


def test_viewer_sees_no_action_buttons(login: Callable[[str | None], Client]) -> None:
    factories.MissionFactory(status=MissionStatus.ERRO)
    client = login("viewer")
    body = client.get("/missoes/").content.decode()
    assert "Nova missão" not in body and 'name="ids"' not in body
    assert "Pausar" not in client.get("/execucao/").content.decode()
    assert "Testar conexão" not in client.get("/recursos/workers/").content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/missoes/nova/",
        "/missoes/lote/",
        "/missoes/1/cancelar/",
        "/missoes/1/tentar-novamente/",
        "/execucao/pausa/",
        "/recursos/workers/novo/",
        "/recursos/workers/1/excluir/",
        "/recursos/workers/1/alternar/",
        "/recursos/workers/1/testar/",
        "/recursos/workers/lote/",
        "/recursos/proxies/importar/",
        "/estrategias/nova/",
        "/estrategias/1/excluir/",
        "/configuracoes/grupo/2/",
        "/configuracoes/max_retries/restaurar/",
        "/webhooks/entregas/1/reenviar/",
    ],
)
def test_viewer_gets_403_on_every_post(login: Callable[[str | None], Client], url: str) -> None:
    assert login("viewer").post(url, {}).status_code == 403


def test_overview_shows_kpis_in_portuguese(login: Callable[[str | None], Client]) -> None:
    now = timezone.now()
    factories.MissionFactory.create_batch(3, status=MissionStatus.QUEUED)
    factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    done = factories.MissionFactory(status=MissionStatus.FINALIZADO, finalizado_at=now)
    failed = factories.MissionFactory(status=MissionStatus.ERRO)
    MissionEvent.objects.create(
        mission=done, kind="transition", to_status="FINALIZADO", created_at=now
    )
    MissionEvent.objects.create(
        mission=failed,
        kind="transition",
        to_status="ERRO",
        error_code="SCRAPE_BLOCKED",
        message="bloqueado",
        created_at=now,
    )
    factories.WorkerFactory(max_sessions=8, active_sessions=2)
    factories.ProxyFactory(type="residential", country="BR")
    body = login("viewer").get("/").content.decode()
    assert "Na fila" in body and "Em execução" in body and "Finalizadas hoje" in body
    assert 'data-kpi="queued">3<' in body
    assert 'data-kpi="running">1<' in body
    assert 'data-kpi="finished_today">1<' in body
    assert 'data-kpi="error_rate">50,0%<' in body
    assert "SCRAPE_BLOCKED" in body and "Residencial" in body
    assert "25%" in body  # 2 of 8 worker slots in use


def test_overview_numbers_use_brazilian_grouping(login: Callable[[str | None], Client]) -> None:
    from orchestrator.models import MissionItem

    mission = factories.MissionFactory(n_items=1234)
    MissionItem.objects.filter(mission=mission).update(
        status="done", finished_at=timezone.now() - dt.timedelta(minutes=1)
    )
    body = login("viewer").get("/").content.decode()
    assert "1.234" in body  # throughput total
    assert 'data-kpi="items_per_min">123,4<' in body


def test_live_partial_answers_304_when_unchanged(login: Callable[[str | None], Client]) -> None:
    client = login("viewer")
    first = client.get("/visao-geral/parcial/")
    assert first.status_code == 200 and first["ETag"]
    second = client.get("/visao-geral/parcial/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 304
    factories.MissionFactory()
    third = client.get("/visao-geral/parcial/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert third.status_code == 200 and third["ETag"] != first["ETag"]


def test_execution_shows_instances_and_manager_stats(login: Callable[[str | None], Client]) -> None:
    now = timezone.now()
    factories.OrchestratorInstanceFactory(
        name="mc-1:42",
        stats={
            "sessions": {
                "last_tick_at": now.isoformat(),
                "duration_ms": 1234,
                "did": 3,
                "error": "",
                "ticks": 10,
            },
            "missions": {
                "last_tick_at": now.isoformat(),
                "duration_ms": 5,
                "did": 0,
                "error": "boom: banco indisponível",
                "error_at": now.isoformat(),
                "ticks": 2,
            },
        },
    )
    factories.BrowserSessionFactory(status="busy", phase="scraping")
    body = login("viewer").get("/execucao/").content.decode()
    assert "mc-1:42" in body and "Ativa" in body
    assert "1,2 s" in body and "boom: banco indisponível" in body
    assert "Sessões ao vivo" in body and "scraping" in body


def test_operator_pauses_and_resumes(login: Callable[[str | None], Client]) -> None:
    client = login("operator")
    response = client.post("/execucao/pausa/", {"paused": "1"})
    assert response.status_code == 302
    assert config.get("paused") is True
    assert "Orquestrador pausado" in client.get("/execucao/").content.decode()
    client.post("/execucao/pausa/", {"paused": "0"})
    assert config.get("paused") is False


def test_pages_render_dates_in_brazilian_format(login: Callable[[str | None], Client]) -> None:
    when = dt.datetime(2026, 11, 27, 17, 5, tzinfo=dt.UTC)  # 14:05 in São Paulo
    mission = factories.MissionFactory()
    MissionEvent.objects.create(mission=mission, kind="info", message="x", created_at=when)
    body = login("viewer").get(f"/missoes/{mission.pk}/").content.decode()
    assert "27/11/2026 14:05" in body


def test_overview_costs_the_same_queries_whatever_the_rows() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dashboard import queries

    def queries_of_overview() -> int:
        with CaptureQueriesContext(connection) as ctx:
            queries.overview(timezone.now(), cap=3)
        return len(ctx.captured_queries)

    factories.MissionFactory(status=MissionStatus.FINALIZADO)
    few = queries_of_overview()
    now = timezone.now()
    for status in (MissionStatus.QUEUED, MissionStatus.EXTRAINDO, MissionStatus.ERRO):
        for mission in factories.MissionFactory.create_batch(3, status=status, n_items=2):
            MissionEvent.objects.create(
                mission=mission, kind="transition", to_status=status, created_at=now
            )
    factories.WorkerFactory.create_batch(2)
    factories.ProxyFactory.create_batch(2)
    # Nothing passes the cap of 3: the same queries, seven of them.
    assert queries_of_overview() == few == 7


def test_overview_marks_estimated_figures(
    login: Callable[[str | None], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import counting

    monkeypatch.setattr(counting, "COUNT_CAP", 2)
    now = timezone.now()
    mission = factories.MissionFactory(status=MissionStatus.QUEUED)
    for hours, to in [(1, "FINALIZADO"), (2, "ERRO"), (3, "FINALIZADO"), (20, "ERRO")]:
        MissionEvent.objects.create(
            mission=mission,
            kind="transition",
            to_status=to,
            created_at=now - dt.timedelta(hours=hours),
        )
    body = login("viewer").get("/").content.decode()
    # More ended missions in 24 h than the cap: the error rate is an estimate.
    assert 'data-kpi="error_rate"><span title="Estimativa">≈&nbsp;</span>' in body
    assert 'data-kpi="queued">1<' in body  # below the cap: exact, no sign


def test_overview_shows_estimates_with_brazilian_grouping() -> None:
    import dataclasses

    from django.template.loader import render_to_string

    from dashboard import queries

    o = queries.overview(timezone.now())
    states = [
        (value, label, 812_000 if value == "FINALIZADO" else 0, value == "FINALIZADO")
        for value, label, _, _ in o.states
    ]
    o = dataclasses.replace(o, queued=25_300, states=states, approximate=frozenset({"queued"}))
    body = render_to_string("dashboard/partials/overview_live.html", {"o": o})
    assert 'data-kpi="queued"><span title="Estimativa">≈&nbsp;</span>25.300<' in body
    assert 'data-state-count="FINALIZADO" title="Estimativa">≈&nbsp;812.000<' in body
    assert 'data-state-count="ERRO">0<' in body
