"""Issue #19, what an operator reads: Configurações saved a group at a time (all or
nothing, errors per field), proxy types and raw errors in pt-BR with the raw code or
text as secondary. View-level; the browser checks are in tests/e2e/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from dashboard import settings_catalog, texts
from orchestrator.states import MissionStatus
from registry import config
from registry.models import ConfigEntry
from tests import factories

pytestmark = pytest.mark.django_db


# --- Configurações: one Salvar per group ------------------------------------------------


def _group_data(index: int, **changes: str) -> dict[str, str]:
    _, keys = settings_catalog.group_keys(index)
    current = config.load()
    data = {
        k: str(current[k]).lower() if isinstance(current[k], bool) else str(current[k])
        for k in keys
    }
    data.update(changes)
    return data


def _index(title: str) -> int:
    return next(i for i, (t, _, _) in enumerate(settings_catalog.groups(), 1) if t == title)


def test_settings_page_has_one_save_button_per_group(login: Callable[..., Client]) -> None:
    body = login("admin").get("/configuracoes/").content.decode()
    n = len(settings_catalog.groups())
    assert body.count("data-settings-form") == n
    assert body.count('type="submit" class="btn btn-primary">Salvar') == n
    for i, (title, _, _) in enumerate(settings_catalog.groups(), 1):
        assert f'action="/configuracoes/grupo/{i}/"' in body
        assert f'Salvar<span class="sr-only"> {title}</span>' in body
    # Each field says what it is, its unit and its default.
    assert 'aria-describedby="d-max_retries"' in body and "Valor de lease_s em segundos" in body


def test_a_group_saves_every_changed_value_together(login: Callable[..., Client]) -> None:
    client = login("admin")
    i = _index("Retentativas")
    data = _group_data(i, max_retries="4", retry_jitter="0,35", retry_backoff_cap_s="600")
    response = client.post(f"/configuracoes/grupo/{i}/", data, follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/configuracoes/#grupo-{i}")
    assert "Retentativas: 3 valores salvos." in response.content.decode()
    stored = dict(ConfigEntry.objects.values_list("key", "value"))
    assert stored == {"max_retries": 4, "retry_jitter": 0.35, "retry_backoff_cap_s": 600}
    # The same form again changes nothing and says so (singular/plural are right).
    again = client.post(f"/configuracoes/grupo/{i}/", _group_data(i), follow=True)
    assert "Retentativas: nenhum valor mudou." in again.content.decode()
    one = client.post(f"/configuracoes/grupo/{i}/", _group_data(i, max_retries="5"), follow=True)
    assert "Retentativas: 1 valor salvo." in one.content.decode()


def test_a_group_with_one_bad_value_saves_nothing_and_marks_each_field(
    login: Callable[..., Client],
) -> None:
    client = login("admin")
    i = _index("Retentativas")
    data = _group_data(i, max_retries="4", retry_jitter="abc", http_max_attempts="0")
    response = client.post(f"/configuracoes/grupo/{i}/", data)
    assert response.status_code == 400
    body = response.content.decode()
    assert not ConfigEntry.objects.exists()  # max_retries=4 was valid, and not saved
    assert 'data-field-error="retry_jitter"' in body and "Deve ser um número." in body
    assert 'data-field-error="http_max_attempts"' in body
    assert 'data-field-error="max_retries"' not in body
    assert "Retentativas: nada foi salvo; corrija 2 campos." in body
    # What was typed is shown back, the bad field flagged for assistive tech.
    assert 'name="retry_jitter" value="abc"' in body and 'name="max_retries" value="4"' in body
    assert 'aria-describedby="d-retry_jitter e-retry_jitter" aria-invalid="true"' in body


def test_a_pair_rule_across_groups_is_checked_on_save(login: Callable[..., Client]) -> None:
    client = login("admin")
    i = _index("Sessões e proxies")
    data = _group_data(i, session_stuck_after_s="30", proxy_cooldown_s="120")
    response = client.post(f"/configuracoes/grupo/{i}/", data)
    assert response.status_code == 400
    assert "corrija 1 campo." in response.content.decode()
    assert not ConfigEntry.objects.exists()


def test_a_bool_of_a_group_is_saved(login: Callable[..., Client]) -> None:
    i = _index("Agendamento")
    login("admin").post(f"/configuracoes/grupo/{i}/", _group_data(i, paused="true"))
    assert config.get("paused") is True and ConfigEntry.objects.count() == 1


def test_viewer_and_operator_cannot_save_a_group(login: Callable[..., Client]) -> None:
    for role in ("viewer", "operator"):
        assert login(role).post("/configuracoes/grupo/1/", {"paused": "true"}).status_code == 403
    assert not ConfigEntry.objects.exists()


# --- proxy types in pt-BR -------------------------------------------------------------------


def test_proxy_types_read_in_portuguese_everywhere(login: Callable[..., Client]) -> None:
    factories.SiteConfigFactory(domain="loja.com.br", proxy_types=["residential", "datacenter"])
    m = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    factories.BrowserSessionFactory(mission=m, status="busy", proxy_type="residential")
    client = login("viewer")
    pages: dict[str, Any] = {
        "/estrategias/": ["Residencial", "Datacenter"],
        f"/missoes/{m.pk}/": ["Residencial"],
        "/execucao/": ["Residencial"],
    }
    for url, labels in pages.items():
        body = client.get(url).content.decode()
        for label in labels:
            assert label in body, (url, label)
        assert ">residential<" not in body and ">datacenter<" not in body, url
        assert "residential</span>" not in body, url


# --- raw errors as sentences, the raw text secondary ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("connect_error: [Errno 111] Connection refused", "Falha de conexão"),
        ("timeout (HTTP 504): upstream", "Tempo esgotado"),
        ("http_503 (HTTP 503): Service Unavailable", "Serviço indisponível"),
        ("job recusado: capacity_exhausted", "job recusado: Worker sem capacidade"),
        ("WRITER_UNAVAILABLE: w1 não respondeu", "Writer indisponível"),
        ("connection failed", "Falha de conexão"),
        ("ReadTimeout: timed out", "Tempo esgotado ao ler a resposta"),
        ("5xx", "O serviço respondeu HTTP 5xx"),
        ("worker: kaboom", "O worker informou um erro"),
    ],
)
def test_raw_errors_read_as_sentences_with_the_raw_text_kept(raw: str, text: str) -> None:
    found = texts.human_error(raw)
    assert found.text == text and found.detail and found.detail in raw


def test_sentences_of_our_own_stay_as_they_are() -> None:
    for own in ["Primeiro job iniciado", "Missão criada com 3 URLs", "endpoint desativado"]:
        assert texts.human_error(own).text == own and texts.human_error(own).detail == ""


def test_worker_writer_and_proxy_errors_are_humanized(login: Callable[..., Client]) -> None:
    factories.WorkerFactory(
        name="w-off", health_status="offline", last_error="connect_error: [Errno 111] refused"
    )
    factories.WriterFactory(
        name="wr-bad", health_status="degraded", last_error="http_503 (HTTP 503): busy"
    )
    factories.ProxyFactory(status="cooldown", last_error="SCRAPE_BLOCKED: 403 em /p")
    client = login("viewer")
    body = client.get("/recursos/workers/").content.decode()
    assert (
        "Falha de conexão" in body and "data-raw-error>connect_error: [Errno 111] refused" in body
    )
    body = client.get("/recursos/writers/").content.decode()
    assert "Serviço indisponível" in body and "http_503 (HTTP 503): busy" in body
    body = client.get("/recursos/proxies/").content.decode()
    assert "Página bloqueada pelo site" in body and "SCRAPE_BLOCKED: 403 em /p" in body


def test_session_and_event_errors_are_humanized(login: Callable[..., Client]) -> None:
    m = factories.MissionFactory(status=MissionStatus.EXTRAINDO)
    factories.BrowserSessionFactory(
        mission=m,
        status="stuck",
        error_code="SESSION_STUCK",
        error_message="worker: Navigation timeout of 30000 ms exceeded",
    )
    factories.BrowserSessionFactory.create_batch(
        3,
        mission=m,
        status="failed",
        error_code="SESSION_OPEN_FAILED",
        error_message="capacity_exhausted: no free slot",
    )
    factories.MissionEventFactory(
        mission=m, error_code="SESSION_FAILED", message="Sessão sk-1 falhou: network_error: reset"
    )
    body = login("viewer").get(f"/missoes/{m.pk}/").content.decode()
    assert "Worker sem capacidade" in body and "capacity_exhausted: no free slot" in body
    assert "Tempo esgotado ao navegar" in body
    assert "Sessão sk-1 falhou: Conexão interrompida" in body
    assert "data-raw-error>network_error: reset" in body


def test_no_template_comment_leaks_into_a_page(login: Callable[..., Client]) -> None:
    # Django's {# #} is one line only: a multi-line one renders as text.
    client = login("admin")
    for url in ["/", "/missoes/", "/configuracoes/", "/recursos/workers/", "/login/"]:
        body = client.get(url).content.decode()
        assert "{#" not in body and "#}" not in body, url
