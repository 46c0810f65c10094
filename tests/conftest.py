"""Shared fixtures: API clients per role and a few named casts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from registry import tokens
from tests import factories

# Property tests check answers, not speed: on a loaded 2-core machine one example can
# take seconds, so no per-example deadline (speed goals live in `bench/`).
hypothesis_settings.register_profile("mission-control", deadline=None)
hypothesis_settings.load_profile("mission-control")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if not settings.IS_POSTGRES:
        skip = pytest.mark.skip(reason="needs PostgreSQL (row locks, LISTEN/NOTIFY, processes)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SQLite tests use a file database in this worker's temporary folder, not the
    in-memory one: threads (live_server, the localnode runner) then each get their own
    connection and lock rows' pages for a moment (WAL + busy_timeout) instead of whole
    tables, so the localnode worker-contract tests run on SQLite too."""
    from django.conf import settings

    for alias, db in settings.DATABASES.items():
        test = db.setdefault("TEST", {})
        if db["ENGINE"] == "django.db.backends.sqlite3" and not test.get("NAME"):
            test["NAME"] = str(tmp_path_factory.mktemp("db") / f"test_{alias}.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections_at_teardown(
    django_db_setup: None, django_db_blocker: Any
) -> Iterator[None]:
    """Before the test database is dropped, end connections a test's child process or
    thread left behind (PostgreSQL refuses to drop a database that is in use). It asks
    for `django_db_setup`, so it is torn down just before the database is."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def make_api_client(db: None) -> Callable[[str | None], APIClient]:
    def make(role: str | None, *, superuser: bool = False) -> APIClient:
        client = APIClient()
        if role is None and not superuser:
            return client
        user = factories.UserFactory(role=role)
        if superuser:
            user.is_superuser = True
            user.is_staff = True
            user.save()
        _, key = tokens.issue(user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        client.user = user  # type: ignore[attr-defined]
        return client

    return make  # type: ignore[return-value]


@pytest.fixture
def anon_api(db: None) -> APIClient:
    return APIClient()


@pytest.fixture
def viewer_api(make_api_client: Callable[..., APIClient]) -> APIClient:
    return make_api_client("viewer")


@pytest.fixture
def operator_api(make_api_client: Callable[..., APIClient]) -> APIClient:
    return make_api_client("operator")


@pytest.fixture
def admin_api(make_api_client: Callable[..., APIClient]) -> APIClient:
    return make_api_client("admin")


@pytest.fixture(autouse=True)
def _evidence_files_in_tmp(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Evidence screenshots and built-in uploads go to a temporary folder, never var/."""
    settings.EVIDENCE_DIR = tmp_path_factory.mktemp("evidence")


@pytest.fixture
def online_worker(db: None) -> factories.Worker:  # type: ignore[name-defined]
    return factories.WorkerFactory(health_status="ok")


@pytest.fixture
def br_residential_proxy(db: None):  # type: ignore[no-untyped-def]
    return factories.ProxyFactory(type="residential", country="BR")


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


from tests.fakes.fixtures import *  # noqa: E402, F403  (fake worker/writer/ETL servers)
