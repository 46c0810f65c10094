"""Which database errors make run_orchestrator wait for the database (and reconnect)
and which are a rolled-back transaction that the next tick simply retries."""

from __future__ import annotations

import psycopg.errors
import pytest
from django.db import InterfaceError, OperationalError

from orchestrator.runner import database_lost, engine_connection_options


def wrapped(cause: Exception) -> OperationalError:
    """What Django raises: its own OperationalError caused by the driver's error."""
    exc = OperationalError(str(cause))
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    "cause",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.errors.IdleInTransactionSessionTimeout(
            "terminating connection due to idle-in-transaction timeout"
        ),
    ],
)
def test_a_server_going_away_is_a_lost_database(cause: Exception) -> None:
    assert database_lost(wrapped(cause))


@pytest.mark.parametrize(
    "cause",
    [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.LockNotAvailable("could not obtain lock"),
    ],
)
def test_a_rolled_back_transaction_is_not(cause: Exception) -> None:
    assert not database_lost(wrapped(cause))


def test_a_broken_socket_without_sqlstate_is_a_lost_database() -> None:
    """What psycopg raises when the server went away mid-query (seen in CI on a
    connection other than the tick's own default one)."""
    cause = psycopg.OperationalError(
        "consuming input failed: server closed the connection unexpectedly"
    )
    assert getattr(cause, "sqlstate", None) is None
    assert database_lost(wrapped(cause))


def test_an_interface_error_is_a_lost_connection() -> None:
    assert database_lost(InterfaceError("connection already closed"))


def test_the_engine_connection_options_bound_idle_transactions_and_keep_the_given_ones() -> None:
    options = engine_connection_options(
        {"options": "-c search_path=mc", "sslmode": "prefer"}, 42, 2.5
    )
    assert options == {
        "options": "-c search_path=mc -c idle_in_transaction_session_timeout=2500",
        "sslmode": "prefer",
        "application_name": "mc-orchestrator-42",
    }
    assert engine_connection_options({}, 1, 0)["options"] == (
        "-c idle_in_transaction_session_timeout=0"
    )
