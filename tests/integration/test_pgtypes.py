"""The `timestamptz` loader (mission_control/pgtypes.py): installed on every PostgreSQL
connection, and every value it reads equals what Django's own loader reads, or the
value goes to Django's loader."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from mission_control import pgtypes
from orchestrator.models import Mission
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="psycopg's loaders"),
]


def loaders(zone: Any = "django") -> tuple[Any, Any]:
    """The installed loader and Django's, both on this connection, optionally with
    another zone than the connection's."""
    from psycopg.pq import Format

    connection.ensure_connection()
    raw = connection.connection
    fast = raw.adapters.get_loader(pgtypes.TIMESTAMPTZ_OID, Format.TEXT)
    django = next(c for c in fast.__mro__[1:] if not getattr(c, "iso_fast_path", False))
    if zone != "django":
        fast = type("Zoned", (fast,), {"timezone": zone})
        django = type("Zoned", (django,), {"timezone": zone})
    return fast(pgtypes.TIMESTAMPTZ_OID, raw), django(pgtypes.TIMESTAMPTZ_OID, raw)


def as_postgres_writes(literal: str) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz::text", [literal])
        return str(cursor.fetchone()[0]).encode()


def load_each(loader: Any, data: bytes) -> Any:
    try:
        value = loader.load(data)
    except Exception as exc:  # the same failure, whatever it is
        return type(exc)
    return value, value.tzinfo, value.fold


def test_every_postgresql_connection_reads_timestamps_with_it() -> None:
    fast, _ = loaders()
    assert getattr(fast, "iso_fast_path", False)
    mission = factories.MissionFactory()
    loaded = Mission.objects.get(pk=mission.pk)
    assert loaded.created_at == mission.created_at
    assert loaded.created_at.tzinfo == dt.UTC


@pytest.mark.parametrize(
    "literal",
    [
        "2026-12-04 05:01:58.123456+00",
        "2026-12-04 05:01:58+00",
        "2026-12-04 05:01:58.1+00",
        "2026-06-01 23:59:59.999999-03",
        "1900-01-01 00:00:00+00",
        "0001-01-01 00:00:00+00",
        "9999-12-31 23:59:59+00",
    ],
)
def test_it_reads_what_djangos_loader_reads(literal: str) -> None:
    fast, django = loaders()
    data = as_postgres_writes(literal)
    assert load_each(fast, data) == load_each(django, data)


@pytest.mark.parametrize(
    "text", [b"0044-03-15 12:00:00+00 BC", b"infinity", b"-infinity", b"12026-01-01 00:00:00+00"]
)
def test_what_it_cannot_read_goes_to_djangos_loader(text: bytes) -> None:
    fast, django = loaders()
    assert load_each(fast, text) == load_each(django, text)


@pytest.mark.parametrize(
    "literal",
    ["2026-11-01 05:30:00+00", "2026-11-01 06:30:00+00", "2026-07-01 12:00:00+00"],
)
def test_in_another_session_zone_it_keeps_the_instant_and_the_fold(literal: str) -> None:
    # 05:30 and 06:30 UTC are both 01:30 in New York that night (DST ends).
    zone = ZoneInfo("America/New_York")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'America/New_York'")
    fast, django = loaders(zone)
    data = as_postgres_writes(literal)
    assert load_each(fast, data) == load_each(django, data)
    # The same instant (compared as timestamps: PEP 495 makes an ambiguous time with
    # fold=1 unequal to any other zone's).
    assert fast.load(data).timestamp() == dt.datetime.fromisoformat(literal).timestamp()


def test_without_a_zone_it_gives_the_wall_time_as_djangos_does() -> None:
    fast, django = loaders(None)
    data = as_postgres_writes("2026-12-04 05:01:58.5+00")
    assert load_each(fast, data) == load_each(django, data)
    assert fast.load(data).tzinfo is None


def test_installing_twice_keeps_one_loader() -> None:
    from psycopg.pq import Format

    connection.ensure_connection()
    adapters = connection.connection.adapters
    before = adapters.get_loader(pgtypes.TIMESTAMPTZ_OID, Format.TEXT)
    pgtypes.install(sender=None, connection=connection)
    assert adapters.get_loader(pgtypes.TIMESTAMPTZ_OID, Format.TEXT) is before
