"""One line per event, quiet where nothing happened: no django.* record printed twice,
no line for a successful health check, no W040 at every SQLite migrate; and runserver
keeps no PostgreSQL connection open per request thread."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mission_control.logging import QuietHealthChecksFilter

ROOT = Path(__file__).resolve().parents[2]


def server_record(line: str, status: int) -> logging.LogRecord:
    record = logging.LogRecord(
        "django.server", logging.INFO, "", 0, '"%s" %s %s', (line, status, 2), None
    )
    record.status_code = status
    return record


@pytest.mark.parametrize(
    ("line", "status", "kept"),
    [
        ("GET /local/worker/api/v1/health HTTP/1.1", 200, False),
        ("GET /healthz HTTP/1.1", 200, False),
        ("GET /healthz/orchestrator HTTP/1.1", 200, False),
        ("GET /readyz?x=1 HTTP/1.1", 200, False),
        ("GET /readyz HTTP/1.1", 503, True),
        ("GET /local/worker/api/v1/health HTTP/1.1", 401, True),
        ("GET /missoes/ HTTP/1.1", 200, True),
        ("POST /local/worker/api/v1/jobs HTTP/1.1", 201, True),
    ],
)
def test_successful_health_checks_are_not_logged(line: str, status: int, kept: bool) -> None:
    assert QuietHealthChecksFilter().filter(server_record(line, status)) is kept


def test_the_filter_is_wired_to_the_development_server_logger() -> None:
    filters = logging.getLogger("django.server").filters
    assert any(isinstance(f, QuietHealthChecksFilter) for f in filters)


def run_python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "DEBUG": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )


SETTINGS = (
    "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'mission_control.settings'; "
    "sys.argv = ['manage.py', *sys.argv[1:]]; import django; django.setup(); "
    "from django.conf import settings; "
)


@pytest.mark.parametrize(("command", "expected"), [("runserver", "0"), ("run_orchestrator", "60")])
def test_runserver_keeps_no_postgresql_connection_between_requests(
    command: str, expected: str
) -> None:
    code = SETTINGS + "print(settings.DATABASES['default']['CONN_MAX_AGE'])"
    env = {"DATABASE_URL": "postgres://u@127.0.0.1:1/x", "DB_CONN_MAX_AGE": "60"}
    assert run_python(code, command, env=env).stdout.strip() == expected


def test_the_sqlite_database_does_not_warn_about_covering_indexes(tmp_path: Path) -> None:
    code = (
        SETTINGS
        + "from django.core import checks; "
        + "print([m.id for m in checks.run_checks() if m.id == 'models.W040'])"
    )
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    assert run_python(code, "check", env=env).stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["django.request", "django.server", "django.security.csrf"])
def test_a_django_warning_is_printed_once(name: str, tmp_path: Path) -> None:
    code = SETTINGS + f"import logging; logging.getLogger({name!r}).warning('mc-once-42')"
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    result = run_python(code, "runserver", env=env)
    assert (result.stdout + result.stderr).count("mc-once-42") == 1
