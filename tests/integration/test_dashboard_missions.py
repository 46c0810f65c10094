"""Dashboard: missions list (filters, keyset pages, bulk), the new-mission form and
the mission detail with its actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orchestrator.models import Mission, MissionItem
from orchestrator.states import MissionStatus
from tests import factories

pytestmark = pytest.mark.django_db


def _ids(body: str) -> list[int]:
    import re

    return [int(x) for x in re.findall(r'data-mission-id="(\d+)"', body)]


# --- list -----------------------------------------------------------------------------


def test_list_shows_states_in_portuguese_with_progress(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(name="Preços", status=MissionStatus.EXTRAINDO, n_items=4)
    Mission.objects.filter(pk=m.pk).update(done_items=1)
    body = login("viewer").get("/missoes/").content.decode()
    assert "Extraindo" in body and "Preços" in body and "1/4" in body
    assert 'class="bar-done" data-bar="25.00"' in body


def test_filters_are_applied_and_kept_in_the_poll_url(login: Callable[..., Client]) -> None:
    a = factories.MissionFactory(status=MissionStatus.ERRO, domain="loja.com.br", name="alfa")
    factories.MissionFactory(status=MissionStatus.QUEUED, domain="loja.com.br")
    factories.MissionFactory(status=MissionStatus.ERRO, domain="outra.com")
    body = (
        login("viewer").get("/missoes/?status=ERRO&domain=loja&period=24h&q=alf").content.decode()
    )
    assert _ids(body) == [a.pk]
    assert "/missoes/parcial/?status=ERRO&amp;domain=loja&amp;period=24h&amp;q=alf" in body


def test_text_search_finds_by_id(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory()
    factories.MissionFactory()
    assert _ids(login("viewer").get(f"/missoes/?q=%23{m.pk}").content.decode()) == [m.pk]


def test_keyset_pages_walk_older_and_back(login: Callable[..., Client]) -> None:
    missions = factories.MissionFactory.create_batch(55)
    newest_first = sorted((m.pk for m in missions), reverse=True)
    client = login("viewer")
    first = client.get("/missoes/").content.decode()
    assert _ids(first) == newest_first[:50]
    assert "mais antigas →" in first
    second = client.get(f"/missoes/?before={newest_first[49]}").content.decode()
    assert _ids(second) == newest_first[50:]
    assert "mais antigas →" not in second and "← mais recentes" in second
    back = client.get(f"/missoes/?after={newest_first[50]}").content.decode()
    assert _ids(back) == newest_first[:50]


def test_list_query_count_is_constant_and_never_counts_all(login: Callable[..., Client]) -> None:
    client = login("viewer")
    factories.MissionFactory.create_batch(2)
    client.get("/missoes/")  # warm the session and role caches

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/missoes/?status=QUEUED").status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    few = queries()
    factories.MissionFactory.create_batch(30)
    many = queries()
    assert len(few) == len(many)
    mission_sql = [q for q in many if "orchestrator_mission" in q]
    assert not any("COUNT(" in q.upper() for q in mission_sql)


def test_rows_partial_is_polled_and_304s(login: Callable[..., Client]) -> None:
    client = login("viewer")
    factories.MissionFactory()
    first = client.get("/missoes/parcial/?status=QUEUED")
    assert first.status_code == 200 and "<html" not in first.content.decode()
    assert (
        client.get("/missoes/parcial/?status=QUEUED", HTTP_IF_NONE_MATCH=first["ETag"]).status_code
        == 304
    )


def test_operator_bulk_cancels_and_keeps_filters(login: Callable[..., Client]) -> None:
    queued = factories.MissionFactory.create_batch(2)
    done = factories.MissionFactory(status=MissionStatus.FINALIZADO)
    client = login("operator")
    response = client.post(
        "/missoes/lote/",
        {"action": "cancel", "ids": [m.pk for m in [*queued, done]], "query": "status=QUEUED&x=1"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/missoes/?status=QUEUED"
    assert set(
        Mission.objects.filter(status=MissionStatus.CANCELADO).values_list("pk", flat=True)
    ) == {m.pk for m in queued}
    body = response.content.decode()
    assert "2 missões canceladas." in body and "1 ignorada: estava" in body


def test_operator_bulk_retries(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.ERRO)
    login("operator").post("/missoes/lote/", {"action": "retry", "ids": [m.pk]})
    m.refresh_from_db()
    assert m.status == MissionStatus.QUEUED


def test_bulk_without_selection_says_so(login: Callable[..., Client]) -> None:
    response = login("operator").post("/missoes/lote/", {"action": "cancel"}, follow=True)
    assert "Selecione ao menos uma missão" in response.content.decode()


# --- new ------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_the_form_suggests_the_demo_catalogue_when_the_local_node_serves_it(
    login: Callable[..., Client], settings: Any, enabled: bool
) -> None:
    settings.LOCALNODE_ENABLED = enabled
    html = login("operator").get("/missoes/nova/").content.decode()
    assert ("http://testserver/local/demo/p/1/" in html) is enabled
    assert ("exemplo.com.br" in html) is not enabled


def test_operator_creates_a_mission_from_pasted_urls(login: Callable[..., Client]) -> None:
    writer = factories.WriterFactory()
    client = login("operator")
    assert "Nova missão" in client.get("/missoes/nova/").content.decode()
    response = client.post(
        "/missoes/nova/",
        {
            "name": "Catálogo",
            "urls": "https://www.loja.com.br/a\nhttps://loja.com.br/b\n\nhttps://loja.com.br/a\n",
            "priority": 5,
            "writer": writer.pk,
        },
    )
    mission = Mission.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/missoes/{mission.pk}/"
    assert (mission.name, mission.total_items, mission.priority, mission.writer_id) == (
        "Catálogo",
        3,
        5,
        writer.pk,
    )
    assert mission.domain == "loja.com.br"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("urls.txt", b"https://a.com/1\nhttps://a.com/2\n"),
        ("urls.csv", b"url,nome\nhttps://a.com/1,x\nhttps://a.com/2,y\n"),
    ],
)
def test_operator_creates_a_mission_from_a_file(
    login: Callable[..., Client], name: str, content: bytes
) -> None:
    upload = SimpleUploadedFile(name, content, content_type="text/plain")
    response = login("operator").post(
        "/missoes/nova/", {"name": "Arquivo", "urls": "", "file": upload, "priority": 0}
    )
    assert response.status_code == 302
    assert sorted(MissionItem.objects.values_list("url", flat=True)) == [
        "https://a.com/1",
        "https://a.com/2",
    ]


def test_invalid_urls_show_portuguese_errors_per_line(login: Callable[..., Client]) -> None:
    response = login("operator").post(
        "/missoes/nova/",
        {"name": "x", "urls": "https://ok.com/1\nftp://nope\nnão é url", "priority": 0},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Linha 2: Deve ser uma URL absoluta http ou https." in body
    assert "Linha 3: Deve ser uma URL absoluta http ou https." in body
    assert not Mission.objects.exists()


def test_missing_fields_show_portuguese_errors(login: Callable[..., Client]) -> None:
    body = (
        login("operator")
        .post("/missoes/nova/", {"name": "", "urls": "", "priority": "x"})
        .content.decode()
    )
    assert "Este campo é obrigatório." in body
    assert "Informe um número inteiro." in body
    body = (
        login("operator")
        .post("/missoes/nova/", {"name": "a", "urls": "", "priority": 0})
        .content.decode()
    )
    assert "Cole as URLs, envie um arquivo ou retome uma execução ETL." in body
    upload = SimpleUploadedFile("urls.pdf", b"x")
    body = (
        login("operator")
        .post("/missoes/nova/", {"name": "a", "file": upload, "priority": 0})
        .content.decode()
    )
    assert "Envie um arquivo .txt ou .csv." in body


def test_viewer_cannot_open_the_form(login: Callable[..., Client]) -> None:
    assert login("viewer").get("/missoes/nova/").status_code == 403


# --- detail ---------------------------------------------------------------------------


def test_detail_shows_stepper_counters_sessions_items_events(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(
        status=MissionStatus.ERRO,
        n_items=3,
        error_code="SCRAPE_ALL_ITEMS_FAILED",
        error_message="todos falharam",
        wait_reason="",
    )
    MissionItem.objects.filter(mission=m).update(status="failed", error_code="SCRAPE_BLOCKED")
    factories.BrowserSessionFactory(mission=m, status="busy", phase="navigating")
    factories.MissionEventFactory(mission=m, message="Sessão aberta", kind="session")
    body = login("operator").get(f"/missoes/{m.pk}/").content.decode()
    for text in [
        "Na fila",
        "Atribuído",
        "Extraindo",
        "Armazenando",
        "Finalizado",
        "SCRAPE_ALL_ITEMS_FAILED",
        "todos falharam",
        "navegando",
        "Sessão aberta",
        "SCRAPE_BLOCKED",
        "Tentar novamente",
    ]:
        assert text in body, text
    assert "Cancelar missão" not in body  # ERRO is not cancellable


def test_detail_shows_wait_reason(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(wait_reason="Sem capacidade livre nos workers")
    assert (
        "Sem capacidade livre nos workers"
        in login("viewer").get(f"/missoes/{m.pk}/").content.decode()
    )


def test_items_filter_by_status_and_page(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(n_items=30)
    MissionItem.objects.filter(mission=m, url__endswith="/7").update(
        status="failed", error_code="SCRAPE_TIMEOUT"
    )
    client = login("viewer")
    body = client.get(f"/missoes/{m.pk}/?items=failed").content.decode()
    assert body.count('data-error-code="SCRAPE_TIMEOUT"') == 1 and "/p/7<" in body
    assert "próximos →" in client.get(f"/missoes/{m.pk}/").content.decode()


def test_detail_query_count_is_constant(login: Callable[..., Client]) -> None:
    client = login("viewer")
    m = factories.MissionFactory(n_items=2)
    factories.BrowserSessionFactory(mission=m)
    client.get(f"/missoes/{m.pk}/")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            client.get(f"/missoes/{m.pk}/")
        return len(ctx)

    count()  # warm per-process caches first
    before = count()
    factories.BrowserSessionFactory.create_batch(5, mission=m)
    factories.MissionEventFactory.create_batch(5, mission=m)
    assert count() == before


def test_operator_cancels_and_retries_from_detail(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory()
    client = login("operator")
    response = client.post(f"/missoes/{m.pk}/cancelar/", follow=True)
    m.refresh_from_db()
    assert m.status == MissionStatus.CANCELADO
    assert f"Missão #{m.pk} cancelada." in response.content.decode()
    again = client.post(f"/missoes/{m.pk}/cancelar/", follow=True).content.decode()
    assert "está em “Cancelado” e não permite esta ação" in again
    client.post(f"/missoes/{m.pk}/tentar-novamente/")
    m.refresh_from_db()
    assert m.status == MissionStatus.QUEUED


def test_unknown_mission_is_404(login: Callable[..., Client]) -> None:
    assert login("viewer").get("/missoes/999999/").status_code == 404


def test_live_partial_of_detail(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory()
    client = login("viewer")
    first = client.get(f"/missoes/{m.pk}/parcial/")
    assert first.status_code == 200 and "Na fila" in first.content.decode()
    Mission.objects.filter(pk=m.pk).update(done_items=0, status=MissionStatus.EXTRAINDO)
    changed = client.get(f"/missoes/{m.pk}/parcial/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and "Extraindo" in changed.content.decode()


def test_stepper_marks_reached_steps_of_an_ended_mission(login: Callable[..., Client]) -> None:
    from django.utils import timezone

    m = factories.MissionFactory(status=MissionStatus.ERRO, atribuido_at=timezone.now())
    body = login("viewer").get(f"/missoes/{m.pk}/parcial/").content.decode()
    assert body.count("border-emerald-500/30") == 1  # Na fila reached
    assert body.count("data-step-failed") == 1  # it failed at Atribuído


def test_needs_review_filter_shows_only_flagged_and_is_kept_in_poll_url(
    login: Callable[..., Client],
) -> None:
    flagged = factories.MissionFactory(name="revisar")
    Mission.objects.filter(pk=flagged.pk).update(needs_review=True)
    factories.MissionFactory(name="ok")
    client = login("viewer")
    body = client.get("/missoes/?revisao=1").content.decode()
    assert _ids(body) == [flagged.pk]
    assert 'name="revisao" value="1" class="checkbox" checked' in body
    assert "/missoes/parcial/?revisao=1" in body
    rows = client.get("/missoes/parcial/?revisao=1").content.decode()
    assert _ids(rows) == [flagged.pk]
    assert len(_ids(client.get("/missoes/").content.decode())) == 2
