"""Dashboard: resources (workers, writers, uploaders, proxies), strategies and
configuration keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import adapters
from registry import config
from registry.models import ConfigEntry, Proxy, SiteConfig, Worker, Writer
from tests import factories

pytestmark = pytest.mark.django_db


# --- resources ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["workers", "writers", "uploaders", "proxies"])
def test_lists_never_render_secrets(login: Callable[..., Client], kind: str) -> None:
    factory = {
        "workers": factories.WorkerFactory,
        "writers": factories.WriterFactory,
        "uploaders": lambda: factories.UploaderFactory(api_key="uploader-secret-key"),
        "proxies": factories.ProxyFactory,
    }[kind]
    obj = factory()  # type: ignore[operator]
    client = login("admin")
    for url in (f"/recursos/{kind}/", f"/recursos/{kind}/{obj.pk}/editar/"):
        body = client.get(url).content.decode()
        assert "secret" not in body, url
        assert "••••" in body


@pytest.mark.parametrize("kind", ["workers", "writers", "uploaders", "proxies"])
def test_list_query_count_is_constant(login: Callable[..., Client], kind: str) -> None:
    factory = {
        "workers": factories.WorkerFactory,
        "writers": factories.WriterFactory,
        "uploaders": factories.UploaderFactory,
        "proxies": factories.ProxyFactory,
    }[kind]
    client = login("admin")
    factory()
    client.get(f"/recursos/{kind}/")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            client.get(f"/recursos/{kind}/")
        return len(ctx)

    count()  # warm per-process caches first
    before = count()
    factory.create_batch(6)
    assert count() == before


def test_admin_creates_a_worker(login: Callable[..., Client]) -> None:
    response = login("admin").post(
        "/recursos/workers/novo/",
        {
            "name": "w1",
            "base_url": "http://127.0.0.1:9000/api/v1",
            "api_key": "k-123",
            "providers": ["local"],
            "max_sessions": 4,
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    worker = Worker.objects.get()
    assert (worker.name, worker.api_key, worker.providers, worker.max_sessions) == (
        "w1",
        "k-123",
        ["local"],
        4,
    )


def test_worker_form_errors_are_in_portuguese(login: Callable[..., Client]) -> None:
    body = (
        login("admin")
        .post("/recursos/workers/novo/", {"name": "", "base_url": "não", "max_sessions": 0})
        .content.decode()
    )
    assert "Este campo é obrigatório." in body
    assert "Insira um URL válido." in body
    assert "Certifique-se que este valor seja maior ou igual a 1." in body


def test_blank_secret_keeps_the_stored_value(login: Callable[..., Client]) -> None:
    worker = factories.WorkerFactory(api_key="keep-me")
    client = login("admin")
    client.post(
        f"/recursos/workers/{worker.pk}/editar/",
        {"name": "renomeado", "base_url": worker.base_url, "api_key": "", "max_sessions": 8},
    )
    worker.refresh_from_db()
    assert (worker.name, worker.api_key) == ("renomeado", "keep-me")
    client.post(
        f"/recursos/workers/{worker.pk}/editar/",
        {
            "name": "renomeado",
            "base_url": worker.base_url,
            "api_key": "",
            "max_sessions": 8,
            "clear_api_key": "on",
        },
    )
    worker.refresh_from_db()
    assert worker.api_key == ""


def test_proxy_password_is_kept_and_country_checked(login: Callable[..., Client]) -> None:
    proxy = factories.ProxyFactory(password="pw")
    client = login("admin")
    data = {
        "external_id": proxy.external_id,
        "type": "residential",
        "scheme": "http",
        "host": proxy.host,
        "port": proxy.port,
        "username": proxy.username,
        "password": "",
        "country": "br",
        "max_sessions": 2,
        "enabled": "on",
    }
    moved = client.post(f"/recursos/proxies/{proxy.pk}/editar/", {**data, "port": 8080})
    assert "Informe a senha de novo" in moved.content.decode()
    assert client.post(f"/recursos/proxies/{proxy.pk}/editar/", data).status_code == 302
    proxy.refresh_from_db()
    assert (proxy.password, proxy.country, proxy.type) == ("pw", "BR", "residential")
    body = client.post(
        f"/recursos/proxies/{proxy.pk}/editar/", {**data, "country": "Brasil"}
    ).content.decode()
    assert "Use o código ISO de 2 letras" in body


def test_second_default_writer_is_refused(login: Callable[..., Client]) -> None:
    factories.WriterFactory(is_default=True)
    body = (
        login("admin")
        .post(
            "/recursos/writers/novo/",
            {
                "name": "w2",
                "base_url": "http://127.0.0.1:9/api",
                "is_default": "on",
                "max_batch_records": 10,
            },
        )
        .content.decode()
    )
    assert "Já existe um writer padrão" in body


def test_toggle_delete_and_bulk(login: Callable[..., Client]) -> None:
    proxies = factories.ProxyFactory.create_batch(3)
    client = login("admin")
    client.post(f"/recursos/proxies/{proxies[0].pk}/alternar/")
    assert Proxy.objects.get(pk=proxies[0].pk).enabled is False
    client.post("/recursos/proxies/lote/", {"action": "disable", "ids": [p.pk for p in proxies]})
    assert not Proxy.objects.filter(enabled=True).exists()
    client.post("/recursos/proxies/lote/", {"action": "enable", "ids": [proxies[1].pk]})
    assert list(Proxy.objects.filter(enabled=True).values_list("pk", flat=True)) == [proxies[1].pk]
    client.post(f"/recursos/proxies/{proxies[2].pk}/excluir/")
    client.post("/recursos/proxies/lote/", {"action": "delete", "ids": [proxies[0].pk]})
    assert list(Proxy.objects.values_list("pk", flat=True)) == [proxies[1].pk]


def test_deleting_a_worker_with_sessions_is_refused_politely(login: Callable[..., Client]) -> None:
    session = factories.BrowserSessionFactory()
    response = login("admin").post(f"/recursos/workers/{session.worker_id}/excluir/", follow=True)
    assert "há sessões ligadas" in response.content.decode()
    assert Worker.objects.filter(pk=session.worker_id).exists()


def test_operator_cannot_edit_resources(login: Callable[..., Client]) -> None:
    worker = factories.WorkerFactory()
    client = login("operator")
    assert client.get("/recursos/workers/novo/").status_code == 403
    assert client.post(f"/recursos/workers/{worker.pk}/excluir/").status_code == 403


def test_test_connection_renders_the_result_inline(
    login: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry import connection as conn

    worker = factories.WorkerFactory()
    monkeypatch.setattr(conn, "check_connection", lambda obj, **kw: conn.Result(True, "2xx", 42))
    response = login("admin").post(f"/recursos/workers/{worker.pk}/testar/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "Conexão bem-sucedida" in body and "42 ms" in body
    monkeypatch.setattr(
        conn, "check_connection", lambda obj, **kw: conn.Result(False, None, None, "timeout")
    )
    body = login("admin").post(f"/recursos/workers/{worker.pk}/testar/").content.decode()
    # The probe's word in pt-BR, the raw reason beneath it.
    assert "Falha no teste: " in body and "Tempo esgotado" in body
    assert "data-raw-error>timeout</span>" in body


def test_adapter_reports_a_refused_target() -> None:
    worker = factories.WorkerFactory(base_url="ftp://nowhere.invalid/api")
    result = adapters.test_connection(worker)
    assert result.ok is False and result.message.startswith("Falha")


def test_proxy_import_json_and_csv(login: Callable[..., Client]) -> None:
    client = login("admin")
    data = [{"id": "px-a", "type": "residential", "host": "10.0.0.1", "port": 8000, "geo": "BR"}]
    upload = SimpleUploadedFile("proxies.json", json.dumps(data).encode())
    response = client.post("/recursos/proxies/importar/", {"file": upload}, follow=True)
    assert "1 criado(s)" in response.content.decode()
    csv_body = b"id,type,host,port\npx-a,datacenter,10.0.0.2,9000\npx-b,mobile,10.0.0.3,9001\n"
    response = client.post(
        "/recursos/proxies/importar/", {"file": SimpleUploadedFile("p.csv", csv_body)}, follow=True
    )
    assert "1 criado(s), 1 atualizado(s)" in response.content.decode()
    assert Proxy.objects.get(external_id="px-a").type == "datacenter"


def test_proxy_import_errors_are_listed(login: Callable[..., Client]) -> None:
    bad = SimpleUploadedFile("proxies.json", b'[{"id": "x", "type": "nope"}]')
    body = (
        login("admin")
        .post("/recursos/proxies/importar/", {"file": bad}, follow=True)
        .content.decode()
    )
    assert "Entrada 1 (x)" in body
    assert not Proxy.objects.exists()
    wrong = SimpleUploadedFile("proxies.xml", b"<x/>")
    body = (
        login("admin")
        .post("/recursos/proxies/importar/", {"file": wrong}, follow=True)
        .content.decode()
    )
    assert "Envie um arquivo .json ou .csv." in body


def test_proxy_import_reads_the_upload_as_a_stream(login: Callable[..., Client]) -> None:
    client = login("admin")
    rows = "".join(f"px-{i},datacenter,10.0.{i // 250}.{i % 250},8000\n" for i in range(2500))
    big = SimpleUploadedFile("p.csv", ("id,type,host,port\n" + rows).encode())
    body = client.post("/recursos/proxies/importar/", {"file": big}, follow=True).content.decode()
    assert "2500 criado(s)" in body  # three chunks of upserts from one pass over the file
    for name, content, message in [
        ("p.json", b"[{", "JSON inválido"),
        ("p.csv", b"id,type\n\xff\xfe\n", "UTF-8"),
        ("p.json", b'{"proxies": []}', "lista de proxies"),
    ]:
        upload = SimpleUploadedFile(name, content)
        page = client.post("/recursos/proxies/importar/", {"file": upload}, follow=True)
        assert message in page.content.decode(), name
    assert Proxy.objects.count() == 2500


# --- strategies -----------------------------------------------------------------------


def test_strategy_crud(login: Callable[..., Client]) -> None:
    client = login("admin")
    response = client.post(
        "/estrategias/nova/",
        {
            "domain": "www.Loja.com.br",
            "proxy_types": ["residential"],
            "countries": "br, us",
            "blocked_proxies": "px-1",
            "max_sessions": 3,
            "items_per_job": 20,
            "job_timeout_s": 60,
            "session_timeout_s": 900,
            "engine": "browser",
            "selectors": '{"preco": ".price"}',
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    sc = SiteConfig.objects.get()
    assert (sc.domain, sc.proxy_types, sc.countries, sc.blocked_proxies, sc.selectors) == (
        "loja.com.br",
        ["residential"],
        ["BR", "US"],
        ["px-1"],
        {"preco": ".price"},
    )
    body = client.get("/estrategias/").content.decode()
    assert "loja.com.br" in body and "Navegador" in body
    body = client.post(
        f"/estrategias/{sc.pk}/editar/",
        {
            "domain": "loja.com.br",
            "countries": "Brasil",
            "max_sessions": 0,
            "items_per_job": 1,
            "job_timeout_s": 1,
            "session_timeout_s": 1,
            "engine": "http",
            "selectors": "[1]",
        },
    ).content.decode()
    assert "Códigos de país inválidos: BRASIL." in body
    assert "Certifique-se que este valor seja maior ou igual a 1." in body
    assert "Informe um objeto JSON" in body
    client.post(f"/estrategias/{sc.pk}/excluir/")
    assert not SiteConfig.objects.exists()


def test_duplicate_strategy_domain_is_refused(login: Callable[..., Client]) -> None:
    factories.SiteConfigFactory(domain="*")
    body = (
        login("admin")
        .post(
            "/estrategias/nova/",
            {
                "domain": "*",
                "max_sessions": 1,
                "items_per_job": 1,
                "job_timeout_s": 1,
                "session_timeout_s": 1,
                "engine": "http",
            },
        )
        .content.decode()
    )
    assert "Já existe" in body


# --- configuration --------------------------------------------------------------------


def test_settings_list_every_key_with_default(login: Callable[..., Client]) -> None:
    body = login("viewer").get("/configuracoes/").content.decode()
    for key in config.KEYS:
        assert f'id="cfg-{key}"' in body
    assert "Salvar" not in body  # viewer: read only


def _group(key: str) -> int:
    from dashboard import settings_catalog

    return next(i for i, (_, _, keys) in enumerate(settings_catalog.groups(), 1) if key in keys)


def _save(client: Client, key: str, value: str) -> Any:
    """Post `key`'s whole group as the page does: every field with its current value."""
    from dashboard import settings_catalog

    _, keys = settings_catalog.group_keys(_group(key))
    current = config.load()
    data = {
        k: str(current[k]).lower() if isinstance(current[k], bool) else str(current[k])
        for k in keys
    }
    data[key] = value
    return client.post(f"/configuracoes/grupo/{_group(key)}/", data)


def test_admin_sets_and_resets_a_value(login: Callable[..., Client]) -> None:
    client = login("admin")
    assert _save(client, "max_retries", "4").status_code == 302
    assert config.get("max_retries") == 4
    assert list(ConfigEntry.objects.values_list("key", flat=True)) == ["max_retries"]
    assert "alterado" in client.get("/configuracoes/").content.decode()
    _save(client, "paused", "true")
    assert config.get("paused") is True
    _save(client, "retry_jitter", "0,35")  # decimal comma
    assert config.get("retry_jitter") == 0.35
    body = client.get("/configuracoes/").content.decode()
    assert 'value="0,35"' in body and "Variação aleatória da espera" in body
    client.post("/configuracoes/max_retries/restaurar/")
    assert not ConfigEntry.objects.filter(key="max_retries").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_retries", "dois", "Deve ser um número inteiro."),
        ("max_retries", "99", "Deve ser no máximo 10."),
        ("retry_jitter", "abc", "Deve ser um número."),
        ("session_tick_s", "0", "Deve ser no mínimo 0,1."),
        (
            "session_stuck_after_s",
            "30",
            "session_stuck_after_s (30 s) deve ser ao menos lease_s (60 s)",
        ),
    ],
)
def test_invalid_values_show_portuguese_errors(
    login: Callable[..., Client], key: str, value: str, message: str
) -> None:
    response = _save(login("admin"), key, value)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body and f'data-field-error="{key}"' in body
    assert not ConfigEntry.objects.exists()


def test_unknown_group_is_404(login: Callable[..., Client]) -> None:
    assert login("admin").post("/configuracoes/grupo/99/", {"max_retries": "1"}).status_code == 404
    assert login("admin").post("/configuracoes/grupo/0/", {}).status_code == 404


def test_writer_default_flag_shows(login: Callable[..., Client]) -> None:
    Writer.objects.create(name="principal", base_url="http://x/api", is_default=True)
    assert "padrão" in login("viewer").get("/recursos/writers/").content.decode()


def test_the_proxies_tab_shows_verified_and_mismatched_geo(login: Callable[..., Client]) -> None:
    factories.ProxyFactory(
        external_id="px-ok",
        country="BR",
        exit_country="BR",
        exit_ip="198.51.100.1",
        geo_checked_at=timezone.now(),
    )
    factories.ProxyFactory(
        external_id="px-off",
        country="BR",
        exit_country="US",
        exit_ip="198.51.100.2",
        geo_checked_at=timezone.now(),
        geo_mismatch=True,
    )
    factories.ProxyFactory(external_id="px-unknown", country="BR")

    html = login("admin").get("/recursos/proxies/").content.decode()

    assert html.count(">verificado</span>") == 1
    assert "saída US" in html and "198.51.100.2" in html
