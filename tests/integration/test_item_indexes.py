"""The item table's indexes: each one earns its writes (every item is inserted once and
updated at least twice), and lookups by mission still go through an index."""

from __future__ import annotations

import pytest
from django.db import connection

from orchestrator.models import MissionItem
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's catalog"),
]


def index_columns() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, array_agg(a.attname ORDER BY k.n) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
            "WHERE t.relname = %s GROUP BY i.relname",
            [MissionItem._meta.db_table],
        )
        return dict(cursor.fetchall())


def test_no_index_repeats_the_head_of_another() -> None:
    columns = index_columns()
    assert ["mission_id"] not in columns.values()
    assert ["mission_id", "url"] in columns.values()
    assert ["mission_id", "status", "id"] in columns.values()


def test_items_of_a_mission_are_found_by_an_index() -> None:
    mission = factories.MissionFactory(n_items=3)
    query = str(MissionItem.objects.filter(mission=mission).only("id").query)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + query)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index" in plan and "Seq Scan" not in plan, plan
