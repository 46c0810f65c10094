"""Resuming an ETL run from the admin's mission form and from `create_missions`
(issue #16): a domain without URLs resumes the latest unfinished run of that domain,
or `etl_run` names one ("latest" or an id), with the same rules and refusals as the
API (docs/contracts/etl-api.md), shown as form errors / command errors, never a 500."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from orchestrator.etl_models import EtlRun
from orchestrator.models import Mission
from tests import factories
from tests.fakes.etl import FakeEtl

pytestmark = pytest.mark.django_db


@pytest.fixture
def etl(fake_etl: FakeEtl, settings) -> FakeEtl:  # type: ignore[no-untyped-def]
    settings.ETL_API_ENDPOINT = fake_etl.base_url
    settings.ETL_API_KEY = fake_etl.api_key
    factories.WriterFactory(is_default=True)
    return fake_etl


def pages(n: int, prefix: str = "https://example.com/p/") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def add(client: Client, **data: object) -> str:
    response = client.post(
        reverse("admin:orchestrator_mission_add"),
        {"name": "x", "domain": "", "priority": 0, "writer": "", "urls": "", **data},
    )
    assert response.status_code in (200, 302), response.status_code
    return "" if response.status_code == 302 else response.content.decode()


# --- admin -------------------------------------------------------------------------


def test_the_admin_resumes_the_latest_run_of_a_domain_given_no_urls(
    etl: FakeEtl, admin_client: Client
) -> None:
    run = etl.add_run("example.com", pages(5), status="running", done=3)

    assert add(admin_client, name="Retomada", domain="example.com") == ""

    mission = Mission.objects.get(name="Retomada")
    link = EtlRun.objects.get(mission=mission)
    assert (link.run_id, link.origin, link.live) == (run.id, EtlRun.Origin.RESUMED, True)
    assert mission.total_items == 2
    assert set(mission.items.values_list("url", flat=True)) == set(pages(5)[3:])
    assert mission.created_by is not None


def test_the_admin_resumes_a_named_run_and_refuses_an_owned_one_as_a_form_error(
    etl: FakeEtl, admin_client: Client
) -> None:
    run = etl.add_run("shop.example", pages(3, "https://shop.example/"), status="running")
    assert add(admin_client, name="Dona", etl_run=run.id) == ""
    owner = Mission.objects.get(name="Dona")

    page = add(admin_client, name="Segunda", etl_run=run.id)
    assert f"A execução ETL {run.id} pertence à missão #{owner.pk}." in page
    page = add(admin_client, name="Latest", domain="shop.example", etl_run="latest")
    assert f"pertence à missão #{owner.pk}" in page
    page = add(admin_client, name="Nenhuma", domain="nada.example")
    assert "Nenhuma execução ETL não concluída para nada.example." in page
    page = add(admin_client, name="Inválida", etl_run="não válido!")
    assert "etl_run" in page and "Informe um valor válido" in page
    page = add(admin_client, name="Vazia")
    assert "Informe as URLs, ou o domínio/execução ETL a retomar." in page

    etl.down()
    page = add(admin_client, name="Fora", domain="example.com")
    assert "ETL indisponível" in page
    assert list(Mission.objects.values_list("name", flat=True)) == ["Dona"]


def test_the_admin_without_an_etl_asks_for_urls(admin_client: Client) -> None:
    factories.WriterFactory(is_default=True)
    page = add(admin_client, name="Sem ETL", domain="example.com")
    assert "Informe as URLs: sem ETL configurado não há execução a retomar." in page
    assert not Mission.objects.exists()


# --- create_missions ---------------------------------------------------------------


def run_command(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_missions", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_missions_resumes_runs_from_json_and_csv(etl: FakeEtl, tmp_path: Path) -> None:
    latest = etl.add_run("example.com", pages(4), status="running", done=1)
    named = etl.add_run("shop.example", pages(2, "https://shop.example/"), status="running")
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            [
                {"name": "Latest", "domain": "example.com"},
                {"name": "Nomeada", "etl_run": named.id, "priority": 3},
                {"name": "Nova", "urls": pages(2, "https://new.example/")},
            ]
        )
    )
    out, _ = run_command(path)
    assert "3 missions (2 URLs; 2 resuming an ETL run) to create." in out

    by_name = {m.name: m for m in Mission.objects.all()}
    assert EtlRun.objects.get(mission=by_name["Latest"]).run_id == latest.id
    assert by_name["Latest"].total_items == 3
    assert EtlRun.objects.get(mission=by_name["Nomeada"]).run_id == named.id
    assert by_name["Nomeada"].priority == 3
    assert EtlRun.objects.get(mission=by_name["Nova"]).origin == EtlRun.Origin.CREATED

    other = etl.add_run("csv.example", pages(2, "https://csv.example/"), status="running")
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(f"name,url,domain,etl_run\nCSV,,,{other.id}\n")
    run_command(csv_path)
    assert EtlRun.objects.get(mission__name="CSV").run_id == other.id


def test_create_missions_validates_every_resume_before_creating_anything(
    etl: FakeEtl, tmp_path: Path
) -> None:
    run = etl.add_run("example.com", pages(3), status="running")
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            [
                {"name": "Boa", "urls": pages(1, "https://ok.example/")},
                {"name": "Primeira", "domain": "example.com"},
                {"name": "Mesma", "etl_run": run.id},
                {"name": "Nenhuma", "domain": "nada.example"},
                {"name": "Inválida", "etl_run": "x y"},
            ]
        )
    )
    with pytest.raises(CommandError, match="3 invalid missions; nothing created"):
        run_command(path)
    assert not Mission.objects.exists()

    _, err = run_command(path, "--skip-invalid")
    assert f"mission 3 (Mesma): etl_run: the run {run.id} is already resumed by mission 2" in err
    assert "mission 4 (Nenhuma): etl_run (409 etl_no_unfinished_run)" in err
    assert "mission 5 (Inválida): etl_run: invalid run id 'x y'" in err
    assert sorted(Mission.objects.values_list("name", flat=True)) == ["Boa", "Primeira"]

    # A live mission owns the run now: the API's 409, as a command error.
    path.write_text(json.dumps([{"name": "Outra", "domain": "example.com"}]))
    with pytest.raises(CommandError, match="nothing created"):
        run_command(path)
    _, err = run_command(path, "--skip-invalid")
    owner = Mission.objects.get(name="Primeira")
    assert f"(409 etl_run_owned): A execução ETL {run.id} pertence à missão #{owner.pk}." in err

    etl.down()
    _, err = run_command(path, "--skip-invalid")
    assert "(503 etl_unavailable)" in err
