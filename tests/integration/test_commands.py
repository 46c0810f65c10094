"""Operator commands: bulk mission creation from files, progress on long work, --help."""

from __future__ import annotations

import io
import json
from importlib.util import find_spec
from pathlib import Path

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from orchestrator.models import Mission, MissionItem
from orchestrator.states import MissionStatus
from registry.models import Proxy
from tests import factories

pytestmark = pytest.mark.django_db

# Commands an operator runs on long work; each prints progress and documents each option.
OPERATOR_COMMANDS = [
    ("orchestrator", "create_missions"),
    ("registry", "import_proxies"),
    ("registry", "import_proxy_strategies"),
    ("orchestrator", "run_orchestrator"),
    ("orchestrator", "setup_schedules"),
    *([("orchestrator", "prune")] if find_spec("orchestrator.management.commands.prune") else []),
]
# Options every Django command has; their help comes from Django.
DJANGO_OPTIONS = {
    "--help",
    "--version",
    "--verbosity",
    "--settings",
    "--pythonpath",
    "--traceback",
    "--no-color",
    "--force-color",
    "--skip-checks",
}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# create_missions


def test_it_creates_one_mission_per_domain_from_a_txt_file(tmp_path: Path) -> None:
    factories.WriterFactory(is_default=True)
    path = write(
        tmp_path,
        "lote.txt",
        "# lote de segunda\nhttps://a.example/1\nhttps://b.example/1\n\nhttps://www.a.example/2\n",
    )

    out, _ = run("create_missions", str(path))

    missions = {m.name: m for m in Mission.objects.all()}
    assert set(missions) == {"lote: a.example", "lote: b.example"}
    assert missions["lote: a.example"].total_items == 2
    assert missions["lote: a.example"].status == MissionStatus.QUEUED
    assert "2 missions (3 URLs) to create." in out
    assert "2/2 missions, 3 URLs" in out


def test_it_splits_a_txt_file_into_chunks(tmp_path: Path) -> None:
    urls = "\n".join(f"https://shop.example/p/{i}" for i in range(25))
    path = write(tmp_path, "urls.txt", urls)

    run("create_missions", str(path), "--group-by", "chunk", "--chunk", "10", "--name", "Lote")

    assert sorted(Mission.objects.values_list("name", "total_items")) == [
        ("Lote 1/3", 10),
        ("Lote 2/3", 10),
        ("Lote 3/3", 5),
    ]


def test_it_groups_csv_rows_by_name_with_priority_and_domain(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "missions.csv",
        "name,url,priority,domain\n"
        "Calçados,https://loja.example/a,5,loja.example\n"
        "Livros,https://livros.example/1,1,\n"
        "Calçados,https://loja.example/b,5,loja.example\n",
    )

    run("create_missions", str(path))

    shoes = Mission.objects.get(name="Calçados")
    assert (shoes.total_items, shoes.priority, shoes.domain) == (2, 5, "loja.example")
    assert list(
        MissionItem.objects.filter(mission=shoes).order_by("id").values_list("url", flat=True)
    ) == ["https://loja.example/a", "https://loja.example/b"]
    assert Mission.objects.get(name="Livros").priority == 1


def test_it_creates_thousands_of_missions_from_json_with_progress(tmp_path: Path) -> None:
    data = {
        "missions": [
            {"name": f"M{n}", "urls": [f"https://s{n % 13}.example/{n}/{i}" for i in range(3)]}
            for n in range(1200)
        ]
    }
    path = write(tmp_path, "missions.json", json.dumps(data))

    out, _ = run("create_missions", str(path), "--progress-every", "500", "--priority", "7")

    assert Mission.objects.count() == 1200
    assert MissionItem.objects.count() == 3600
    assert set(Mission.objects.values_list("priority", flat=True)) == {7}
    assert [line.strip() for line in out.splitlines() if line.startswith("  ")] == [
        "500/1200 missions, 1500 URLs",
        "1000/1200 missions, 3000 URLs",
        "1200/1200 missions, 3600 URLs",
    ]
    assert "Missions: 1200 created" in out


def test_a_file_with_an_invalid_mission_creates_nothing(tmp_path: Path) -> None:
    data = [
        {"name": "boa", "urls": ["https://ok.example/1"]},
        {"name": "ruim", "urls": ["ftp://nope.example/1", "not a url"]},
        {"name": "", "urls": ["https://ok.example/2"]},
    ]
    path = write(tmp_path, "missions.json", json.dumps(data))

    with pytest.raises(CommandError, match="2 invalid missions; nothing created"):
        run("create_missions", str(path))

    assert not Mission.objects.exists()


def test_skip_invalid_creates_the_valid_missions_and_reports_the_rest(tmp_path: Path) -> None:
    data = [
        {"name": "boa", "urls": ["https://ok.example/1"]},
        {"name": "ruim", "urls": ["ftp://nope.example/1"]},
    ]
    path = write(tmp_path, "missions.json", json.dumps(data))

    out, err = run("create_missions", str(path), "--skip-invalid")

    assert list(Mission.objects.values_list("name", flat=True)) == ["boa"]
    assert "mission 2 (ruim): urls: 0: Must be an absolute http or https URL." in err
    assert "1 skipped" in out


def test_dry_run_validates_and_creates_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "urls.txt", "https://a.example/1\nhttps://b.example/2\n")

    out, _ = run("create_missions", str(path), "--dry-run")

    assert "2 missions (2 URLs) to create." in out
    assert not Mission.objects.exists()


def test_it_uses_the_writer_named_on_the_command_line(tmp_path: Path) -> None:
    factories.WriterFactory(is_default=True, name="padrao")
    other = factories.WriterFactory(name="arquivo")
    path = write(tmp_path, "urls.txt", "https://a.example/1\n")

    run("create_missions", str(path), "--writer", "arquivo")

    assert Mission.objects.get().writer == other
    with pytest.raises(CommandError, match="No writer named 'nenhum'"):
        run("create_missions", str(path), "--writer", "nenhum")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("urls.xml", "<urls/>", "Unknown format 'xml'"),
        ("bad.json", "{", "not valid JSON"),
        ("bad.json", '{"missions": {}}', "expected a list of missions"),
        ("bad.csv", "title,link\nx,y\n", "header must include name and url"),
        ("empty.txt", "# nothing\n", "no missions in the file"),
    ],
)
def test_it_rejects_files_it_cannot_read(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)

    with pytest.raises(CommandError, match=message):
        run("create_missions", str(path))


# Progress of the other long commands


def test_importing_thousands_of_proxies_prints_progress(tmp_path: Path) -> None:
    rows = [f"px-{n},datacenter,http,10.0.{n // 250}.{n % 250},8080" for n in range(2500)]
    path = write(tmp_path, "proxies.csv", "id,type,scheme,host,port\n" + "\n".join(rows))

    out, _ = run("import_proxies", str(path))

    assert Proxy.objects.count() == 2500
    progress = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert progress[0] == "1000/2500" and progress[-1] == "2500/2500"
    assert "Proxies: 2500 created, 0 updated, 0 skipped." in out


# --help


@pytest.mark.parametrize(("app", "name"), OPERATOR_COMMANDS)
def test_every_operator_command_explains_itself_and_each_option(app: str, name: str) -> None:
    command = load_command_class(app, name)
    parser = command.create_parser("manage.py", name)

    assert command.help.strip(), f"{name} has no help"
    undocumented = [
        action.option_strings or [action.dest]
        for action in parser._actions
        if not set(action.option_strings) & DJANGO_OPTIONS and not (action.help or "").strip()
    ]
    assert not undocumented, f"{name}: options without help: {undocumented}"
    assert parser.format_help().startswith("usage: manage.py " + name)
