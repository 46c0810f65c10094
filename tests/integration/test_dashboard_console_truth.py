"""Issue #19: the console's states never contradict each other. View-level checks
(the browser-level ones are in tests/e2e/test_dashboard_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from localnode.models import LocalBatch, LocalRecord
from orchestrator.models import Mission, MissionItem
from orchestrator.states import MissionStatus
from tests import factories

pytestmark = pytest.mark.django_db


# --- the live mission page ------------------------------------------------------------


def test_mission_live_partial_carries_items_and_actions(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.EXTRAINDO, n_items=2)
    client = login("operator")
    body = client.get(f"/missoes/{m.pk}/parcial/").content.decode()
    assert 'id="items-title"' in body and "Cancelar missão" in body
    Mission.objects.filter(pk=m.pk).update(
        status=MissionStatus.FINALIZADO, done_items=2, finalizado_at=timezone.now()
    )
    MissionItem.objects.filter(mission=m).update(status="done")
    last = client.get(f"/missoes/{m.pk}/parcial/")
    text = last.content.decode()
    assert last.status_code == 286  # app.js swaps this last state in and stops polling
    assert "Cancelar missão" not in text
    table = text.split("<tbody>")[-1]
    assert 'data-status="done"' in table and 'data-status="pending"' not in table


def test_items_filter_and_page_are_kept_in_the_poll_url(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.EXTRAINDO, n_items=3)
    body = login("viewer").get(f"/missoes/{m.pk}/?items=failed").content.decode()
    assert f'data-poll-url="/missoes/{m.pk}/parcial/?items=failed"' in body


def test_only_polling_pages_show_the_live_indicator(login: Callable[..., Client]) -> None:
    running = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    ended = factories.MissionFactory(status=MissionStatus.FINALIZADO)
    client = login("admin")
    for url in ["/", "/missoes/", "/execucao/", f"/missoes/{running.pk}/"]:
        body = client.get(url).content.decode()
        assert "data-live-indicator" in body and "data-poll-url" in body, url
    for url in ["/recursos/workers/", "/configuracoes/", "/estrategias/", f"/missoes/{ended.pk}/"]:
        # The inline stylesheet names the indicator's states; the markup must not.
        body = re.sub(r"<style[^>]*>.*?</style>", "", client.get(url).content.decode(), flags=re.S)
        assert "data-live-indicator" not in body and "data-poll-url" not in body, url


# --- progress: done and failed apart ----------------------------------------------------


def test_progress_shows_done_and_failed_apart(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.ERRO, n_items=40)
    Mission.objects.filter(pk=m.pk).update(done_items=0, failed_items=40)
    client = login("viewer")
    detail = client.get(f"/missoes/{m.pk}/").content.decode()
    assert 'class="bar-done" data-bar="0.00"' in detail
    assert 'class="bar-failed" data-bar="100.00"' in detail
    assert "0 concluídos" in detail and "40 falhos" in detail
    rows = client.get("/missoes/").content.decode()
    assert 'class="bar-failed" data-bar="100.00"' in rows and "40 falharam" in rows


def test_failed_mission_stepper_marks_the_failing_step(login: Callable[..., Client]) -> None:
    now = timezone.now()
    m = factories.MissionFactory(
        status=MissionStatus.ERRO, atribuido_at=now, extraindo_at=now, error_code="X"
    )
    body = login("viewer").get(f"/missoes/{m.pk}/").content.decode()
    failed = body.split("data-step-failed")
    assert len(failed) == 2 and "Extraindo" in failed[1][:1200]
    assert "falhou aqui" in body


# --- export only where records exist ------------------------------------------------------


def test_export_offered_only_when_the_local_writer_holds_records(
    login: Callable[..., Client],
) -> None:
    writer = factories.WriterFactory(name="writer-externo")
    empty = factories.MissionFactory(status=MissionStatus.FINALIZADO)
    elsewhere = factories.MissionFactory(status=MissionStatus.FINALIZADO, writer=writer)
    Mission.objects.filter(pk=elsewhere.pk).update(records_delivered=7)
    local = factories.MissionFactory(status=MissionStatus.FINALIZADO)
    now = timezone.now()
    batch = LocalBatch.objects.create(batch_key="b19", mission_id=local.pk, created_at=now)
    LocalRecord.objects.create(
        mission_id=local.pk, item_id="1", batch=batch, data={}, created_at=now
    )
    client = login("viewer")
    assert "data-export" not in client.get(f"/missoes/{empty.pk}/").content.decode()
    other = client.get(f"/missoes/{elsewhere.pk}/").content.decode()
    assert "data-export" not in other
    assert "7 registros no writer" in other and "writer-externo" in other
    assert "data-export" in client.get(f"/missoes/{local.pk}/").content.decode()


# --- badges and counts agree ---------------------------------------------------------------


def test_switched_off_proxy_is_disabled_everywhere(login: Callable[..., Client]) -> None:
    factories.ProxyFactory(external_id="px-off", enabled=False, status="available")
    factories.ProxyFactory(external_id="px-on", status="available")
    client = login("admin")
    rows = client.get("/recursos/proxies/").content.decode()
    off_row = rows.split('data-resource-id="')[1:]
    off = next(r for r in off_row if "px-off" in r)
    assert 'data-status="disabled"' in off and 'data-status="available"' not in off
    overview = client.get("/").content.decode()
    assert 'data-bar="50.00"' in overview  # pool health: 1 of 2 available, not 100 %


def test_offline_worker_slots_are_not_capacity(login: Callable[..., Client]) -> None:
    factories.WorkerFactory(name="w-up", max_sessions=8, active_sessions=2, health_status="ok")
    factories.WorkerFactory(
        name="w-down", max_sessions=6, active_sessions=0, health_status="offline"
    )
    client = login("admin")
    for url in ["/", "/execucao/"]:
        body = client.get(url).content.decode()
        assert 'de <span class="mono">8</span> sessões em uso' in body, url
        assert "data-offline-slots" in body and "6" in body, url


def test_healthy_worker_hides_a_stale_error(login: Callable[..., Client]) -> None:
    factories.WorkerFactory(name="w-ok", health_status="ok", last_error="connect_error")
    factories.WorkerFactory(name="w-bad", health_status="offline", last_error="timeout antigo")
    body = login("admin").get("/recursos/workers/").content.decode()
    assert "connect_error" not in body and "timeout antigo" in body


# --- item-level failures and repeated errors ----------------------------------------------


def test_overview_shows_item_failures_per_code_and_domain(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.FINALIZADO, domain="demo.com.br", n_items=3)
    now = timezone.now()
    items = list(MissionItem.objects.filter(mission=m).order_by("id"))
    for item, code, http in [(items[0], "SCRAPE_BLOCKED", 403), (items[1], "SCRAPE_BLOCKED", 429)]:
        MissionItem.objects.filter(pk=item.pk).update(
            status="failed", error_code=code, http_status=http, finished_at=now
        )
    body = login("viewer").get("/").content.decode()
    assert 'data-item-failures="2"' in body
    assert "Página bloqueada pelo site" in body and "demo.com.br" in body


def test_overview_groups_repeated_errors(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory()
    for _ in range(8):
        factories.MissionEventFactory(mission=m, error_code="SESSION_OPEN_FAILED", message="x")
    body = login("viewer").get("/").content.decode()
    assert body.count("data-error-group=") == 1 and 'data-error-group="8"' in body
    assert "8\u00d7" in body and "Não foi possível abrir a sessão" in body


# --- operator text ---------------------------------------------------------------------


def test_codes_phases_durations_and_cron_read_as_sentences() -> None:
    from dashboard import texts

    assert texts.duration_text(1065) == "1,1 s" and texts.duration_text(84) == "84 ms"
    assert texts.cron_text("0 6 * * *") == "todo dia às 06:00"
    assert texts.phase_text("navigating") == "navegando"
    assert texts.tick_text({"replenished": 8, "polled": 1}) == (
        "8 sessões repostas · 1 sessão consultada"
    )
    assert texts.error_line("WRITER_UNAVAILABLE: w1 não respondeu") == (
        "Writer indisponível: w1 não respondeu"
    )


def test_mission_page_humanizes_codes_and_phases(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.ERRO, error_code="SCRAPE_ALL_ITEMS_FAILED")
    factories.BrowserSessionFactory(mission=m, status="busy", phase="navigating")
    body = login("viewer").get(f"/missoes/{m.pk}/").content.decode()
    assert "Todos os itens falharam" in body and "navegando" in body
    assert ">navigating<" not in body


def test_locale_is_pinned_to_pt_br_whatever_the_browser(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(n_items=2)
    Mission.objects.filter(pk=m.pk).update(done_items=1)
    client = login("viewer")
    body = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="pt-BR"' in body
    login_page = Client().post(
        "/login/", {"username": "x", "password": "y"}, HTTP_ACCEPT_LANGUAGE="en-US"
    )
    text = login_page.content.decode()
    assert "Please enter a correct" not in text and "Por favor" in text


# --- a long day: bounded pages --------------------------------------------------------------


def test_ended_sessions_are_grouped_and_the_page_stays_bounded(
    login: Callable[..., Client],
) -> None:
    m = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    factories.BrowserSessionFactory(mission=m, status="busy", phase="extracting")
    client = login("viewer")
    small = len(client.get(f"/missoes/{m.pk}/").content)
    factories.BrowserSessionFactory.create_batch(
        126, mission=m, status="failed", error_code="SESSION_OPEN_FAILED"
    )
    body = client.get(f"/missoes/{m.pk}/").content.decode()
    assert body.count("data-session-row") == 1  # the live one
    assert 'data-session-group="126"' in body and "126</span> sessões" in body
    assert len(body) - small < 2000  # one grouped row, not 126


def test_events_are_paginated(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory()
    events = [factories.MissionEventFactory(mission=m, message=f"evento {i}") for i in range(45)]
    client = login("viewer")
    first = client.get(f"/missoes/{m.pk}/").content.decode()
    assert "evento 44" in first and "evento 4<" not in first and "mais antigos" in first
    older = client.get(f"/missoes/{m.pk}/?eventos_antes={events[5].pk}").content.decode()
    assert "evento 4<" in older and "evento 44" not in older and "mais recentes" in older


# --- Configurações ---------------------------------------------------------------------


def test_every_setting_is_grouped_and_described_in_portuguese(
    login: Callable[..., Client],
) -> None:
    from dashboard import settings_catalog
    from registry import config

    grouped = [k for _, _, keys in settings_catalog.GROUPS for k, _ in keys]
    assert sorted(grouped) == sorted(config.KEYS)  # each key once, none left out
    body = login("admin").get("/configuracoes/").content.decode()
    for title in ["Agendamento", "Retentativas", "Sessões e proxies", "Webhooks", "Retenção"]:
        assert f">{title}</h2>" in body
    assert ">Disjuntores</h2>" in body and body.count("data-settings-group") == 6
    for _key, spec in config.KEYS.items():
        assert spec.description not in body  # the English text never shows
    assert "Espera máxima entre tentativas da missão." in body and "900 s" in body


# --- webhooks in the console ------------------------------------------------------------


def test_admin_creates_and_edits_a_webhook_in_the_console(
    login: Callable[..., Client],
) -> None:
    from orchestrator.models import WebhookEndpoint

    client = login("admin")
    assert "Novo webhook" in client.get("/webhooks/").content.decode()
    bad = client.post("/webhooks/novo/", {"name": "crm", "url": "ftp://x", "secret": "curto"})
    text = bad.content.decode()
    assert bad.status_code == 400 and "Use pelo menos 16 caracteres." in text
    assert "Escolha pelo menos um evento." in text
    ok = client.post(
        "/webhooks/novo/",
        {
            "name": "crm",
            "url": "https://crm.example.com/hook",
            "secret": "s" * 20,
            "events": ["mission.finalizado", "mission.erro"],
            "enabled": "on",
        },
    )
    assert ok.status_code == 302
    hook = WebhookEndpoint.objects.get(name="crm")
    assert hook.events == ["mission.erro", "mission.finalizado"] and hook.secret == "s" * 20
    edit = client.post(
        f"/webhooks/{hook.pk}/editar/",
        {"name": "crm", "url": "https://crm.example.com/v2", "events": ["mission.erro"]},
    )
    assert edit.status_code == 302
    hook.refresh_from_db()
    assert hook.url.endswith("/v2") and hook.secret == "s" * 20 and not hook.enabled
    assert login("operator").get("/webhooks/novo/").status_code == 403  # admin, as the API


def test_operator_creates_and_edits_a_recurring_mission_in_the_console(
    login: Callable[..., Client],
) -> None:
    from orchestrator.models import RecurringMission

    client = login("operator")
    page = client.get("/recorrentes/nova/").content.decode()
    assert "todo dia às 06:00" in page  # the default cron, read aloud
    bad = client.post("/recorrentes/nova/", {"name": "diária", "cron": "nunca", "urls": ""})
    assert bad.status_code == 400 and 'id="rm-cron-e"' in bad.content.decode()
    ok = client.post(
        "/recorrentes/nova/",
        {
            "name": "diária",
            "cron": "0 6 * * *",
            "timezone": "America/Sao_Paulo",
            "urls": "https://loja.com.br/a\nhttps://loja.com.br/b",
            "priority": "1",
            "overlap_policy": "skip",
            "enabled": "on",
        },
    )
    assert ok.status_code == 302, ok.content.decode()[:2000]
    rm = RecurringMission.objects.get(name="diária")
    assert len(rm.urls) == 2 and rm.enabled
    listing = client.get("/recorrentes/").content.decode()
    assert "todo dia às 06:00" in listing and f"/recorrentes/{rm.pk}/editar/" in listing
    edit = client.post(
        f"/recorrentes/{rm.pk}/editar/",
        {
            "name": "diária",
            "cron": "30 8 * * 1-5",
            "timezone": "America/Sao_Paulo",
            "urls": "https://loja.com.br/a",
            "priority": "0",
            "overlap_policy": "queue",
        },
    )
    assert edit.status_code == 302
    rm.refresh_from_db()
    assert rm.cron == "30 8 * * 1-5" and rm.urls == ["https://loja.com.br/a"] and not rm.enabled
    assert login("viewer").get("/recorrentes/nova/").status_code == 403
