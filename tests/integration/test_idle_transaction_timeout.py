"""A process frozen in the middle of a transaction (SIGSTOP, a paused VM) holds its row
locks until PostgreSQL ends the transaction: the orchestrator's connections bound that
idle time, so the process that took over its leases is never blocked for longer."""

from __future__ import annotations

import io
import os
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import InternalError, connection

from orchestrator.runner import DATABASE_ERRORS, database_lost, engine_connection_options
from tests import factories
from tests.e2e.processes import database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def connect(**options: Any) -> psycopg.Connection[Any]:
    """A connection of its own to the test database, as another process would open."""
    return psycopg.connect(database_url(), **options)


def test_a_frozen_transaction_is_ended_and_its_locks_freed() -> None:
    mission = factories.MissionFactory()
    table = mission._meta.db_table
    frozen = connect(**engine_connection_options({}, 1, 0.3))
    frozen.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", (mission.pk,))
    # ...and now it sends nothing more, as a process stopped between two statements.
    with connect(autocommit=True) as successor:
        # Blocks until the server ends the frozen transaction; the lock timeout only turns
        # a regression (the bound missing) into a failure instead of a hang.
        successor.execute("SET lock_timeout = '60s'")
        row = successor.execute(
            f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", (mission.pk,)
        ).fetchone()
        assert row == (mission.pk,)
    # When the frozen process wakes up, its next statement finds the connection gone,
    # which the runner treats as a lost database (reconnect), not a bad row.
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout) as lost:
        frozen.execute("SELECT 1")
    frozen.close()
    wrapped = InternalError(str(lost.value))  # what Django raises for it
    wrapped.__cause__ = lost.value
    assert isinstance(wrapped, DATABASE_ERRORS)
    assert database_lost(wrapped)


def test_run_orchestrator_connects_with_the_bound(settings: Any) -> None:
    settings.ORCHESTRATOR_IDLE_TX_TIMEOUT_S = 7
    db = connection.settings_dict
    given = db["OPTIONS"]
    try:
        call_command("run_orchestrator", "--once", "--managers", "missions", stdout=io.StringIO())
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SHOW idle_in_transaction_session_timeout")
            assert cursor.fetchone() == ("7s",)
            cursor.execute("SELECT current_setting('application_name')")
            assert cursor.fetchone() == (f"mc-orchestrator-{os.getpid()}",)
    finally:
        db["OPTIONS"] = given
        connection.close()
