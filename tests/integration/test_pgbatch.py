"""Batched writes and filters over arrays (orchestrator/pgbatch.py): on PostgreSQL one
statement over `unnest`, elsewhere the ORM; both must say the same thing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.db import DataError, connection, models, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce

from orchestrator import pgbatch
from orchestrator.models import (
    BrowserSession,
    Mission,
    MissionItem,
    ProxyDomainHealth,
    WebhookEndpoint,
)
from orchestrator.states import MissionStatus
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
EARLIER = NOW - dt.timedelta(hours=3)
ITEM_FIELDS = ["session", "job_key", "finished_at", "failed_proxies"]


def items(n: int) -> list[MissionItem]:
    mission = factories.MissionFactory(n_items=n)
    return list(MissionItem.objects.filter(mission=mission).order_by("id"))


def ids(qs: models.QuerySet[Any]) -> set[int]:
    return set(qs.values_list("id", flat=True))


def snapshot(model: type[models.Model], pks: Sequence[int], fields: Sequence[str]) -> list[Any]:
    attnames = [model._meta.get_field(f).attname for f in fields]
    rows = {row[0]: row[1:] for row in model._default_manager.values_list("pk", *attnames)}
    return [rows[pk] for pk in pks]


def assert_same_as_orm(
    model: type[models.Model],
    ours: list[Any],
    theirs: list[Any],
    fields: list[str],
    changes: list[Callable[[Any], None]],
    *,
    identity: str,
) -> None:
    """Apply each change to a pair of twin rows, write one twin with pgbatch and the
    other with the ORM, and compare the rows as the database holds them (all but the
    primary key and the `identity` column, which tells twins apart)."""
    for change, a, b in zip(changes, ours, theirs, strict=True):
        change(a)
        change(b)

    assert pgbatch.bulk_update(model, ours, fields) == len(ours)
    assert model._default_manager.bulk_update(theirs, fields) == len(theirs)

    every = [
        f.name for f in model._meta.concrete_fields if not f.primary_key and f.name != identity
    ]
    assert snapshot(model, [o.pk for o in ours], every) == snapshot(
        model, [o.pk for o in theirs], every
    )


def test_bulk_update_writes_the_given_fields_of_items_as_the_orm_does() -> None:
    rows = items(5)
    session = factories.BrowserSessionFactory(mission=rows[0].mission)
    MissionItem.objects.filter(pk__in=[r.pk for r in rows]).update(
        session=session,
        job_key="old",
        finished_at=EARLIER,
        failed_proxies=["px-0"],
        error_message="kept",
    )
    fresh = list(MissionItem.objects.filter(pk__in=[r.pk for r in rows]).order_by("id"))
    ours, theirs, other = fresh[:2], fresh[2:4], fresh[4]
    before_other = snapshot(MissionItem, [other.pk], ["session", "job_key", "error_message"])

    def first(item: MissionItem) -> None:
        item.job_key = "new-1"
        item.finished_at = NOW
        item.failed_proxies = ["px-1", "px-2"]
        item.session = None
        item.error_message = "not written: not in fields"

    def second(item: MissionItem) -> None:
        item.job_key = ""
        item.finished_at = None
        item.failed_proxies = []
        item.error_message = "not written either"

    assert_same_as_orm(MissionItem, ours, theirs, ITEM_FIELDS, [first, second], identity="url")

    assert snapshot(MissionItem, [o.pk for o in ours], [*ITEM_FIELDS, "error_message"]) == [
        (None, "new-1", NOW, ["px-1", "px-2"], "kept"),
        (session.pk, "", None, [], "kept"),
    ]
    assert snapshot(MissionItem, [other.pk], ["session", "job_key", "error_message"]) == (
        before_other
    )


def test_bulk_update_writes_proxy_domain_health_as_the_orm_does() -> None:
    proxy = factories.ProxyFactory()
    rows = [
        ProxyDomainHealth.objects.create(
            proxy=proxy,
            domain=f"site{i}.com",
            score=1.5,
            failures=3,
            blocked_until=EARLIER,
            blocked_reason="old",
            updated_at=EARLIER,
        )
        for i in range(5)
    ]
    ours, theirs, other = rows[:2], rows[2:4], rows[4]

    def blocked(h: ProxyDomainHealth) -> None:
        h.score = 4.25
        h.blocked_until = NOW + dt.timedelta(minutes=30)
        h.blocked_reason = "bloqueado: 4 falhas"
        h.updated_at = NOW
        h.failures = 99  # not in fields

    def unblocked(h: ProxyDomainHealth) -> None:
        h.score = -0.5
        h.blocked_until = None
        h.blocked_reason = ""
        h.updated_at = NOW

    fields = ["score", "blocked_until", "blocked_reason", "updated_at"]
    assert_same_as_orm(
        ProxyDomainHealth, ours, theirs, fields, [blocked, unblocked], identity="domain"
    )

    assert snapshot(ProxyDomainHealth, [o.pk for o in ours], [*fields, "failures"]) == [
        (4.25, NOW + dt.timedelta(minutes=30), "bloqueado: 4 falhas", NOW, 3),
        (-0.5, None, "", NOW, 3),
    ]
    other.refresh_from_db()
    assert (other.score, other.blocked_until, other.blocked_reason) == (1.5, EARLIER, "old")


def test_bulk_update_of_nothing_or_one_row() -> None:
    (item,) = items(1)
    assert pgbatch.bulk_update(MissionItem, [], ITEM_FIELDS) == 0

    item.job_key = "solo"
    item.failed_proxies = ["px-9"]
    assert pgbatch.bulk_update(MissionItem, [item], ["job_key", "failed_proxies"]) == 1

    assert snapshot(MissionItem, [item.pk], ["job_key", "failed_proxies"]) == [("solo", ["px-9"])]


@pytest.fixture
def keyed() -> list[MissionItem]:
    """Four items with job keys k0..k3; the first two in one session, the rest in
    another."""
    rows = items(4)
    mission = rows[0].mission
    sessions: list[BrowserSession] = [
        factories.BrowserSessionFactory(mission=mission) for _ in range(2)
    ]
    for i, item in enumerate(rows):
        item.session = sessions[i // 2]
        item.job_key = f"k{i}"
    MissionItem.objects.bulk_update(rows, ["session", "job_key"])
    return rows


def test_rows_in_matches_whole_tuples_only(keyed: list[MissionItem]) -> None:
    a, b, c, _ = keyed
    cond = pgbatch.rows_in(
        MissionItem, ["pk", "job_key"], [(a.pk, "k0"), (b.pk, "wrong"), (c.pk, "k2")]
    )

    assert ids(MissionItem.objects.filter(cond)) == {a.pk, c.pk}


def test_rows_in_with_three_fields_and_a_foreign_key(keyed: list[MissionItem]) -> None:
    a, b, c, d = keyed
    s1, s2 = a.session_id, c.session_id
    cond = pgbatch.rows_in(
        MissionItem,
        ["pk", "session", "job_key"],
        [(a.pk, s1, "k0"), (b.pk, s2, "k1"), (c.pk, s2, "k2"), (d.pk, s2, "k0")],
    )

    assert ids(MissionItem.objects.filter(cond)) == {a.pk, c.pk}


def test_rows_in_by_foreign_key_selects_every_row_of_the_pair(keyed: list[MissionItem]) -> None:
    a, b, c, _ = keyed
    MissionItem.objects.filter(pk=b.pk).update(job_key="k0")
    cond = pgbatch.rows_in(
        MissionItem, ["session", "job_key"], [(a.session_id, "k0"), (c.session_id, "k0")]
    )

    assert ids(MissionItem.objects.filter(cond)) == {a.pk, b.pk}


def test_rows_in_with_no_rows_or_one_row(keyed: list[MissionItem]) -> None:
    a, *_ = keyed
    assert ids(MissionItem.objects.filter(pgbatch.rows_in(MissionItem, ["pk"], []))) == set()

    one = pgbatch.rows_in(MissionItem, ["pk", "job_key"], [(a.pk, "k0")])
    assert ids(MissionItem.objects.filter(one)) == {a.pk}
    miss = pgbatch.rows_in(MissionItem, ["pk", "job_key"], [(a.pk, "k1")])
    assert ids(MissionItem.objects.filter(miss)) == set()


def test_rows_in_drives_an_update(keyed: list[MissionItem]) -> None:
    a, b, c, d = keyed
    cond = pgbatch.rows_in(
        MissionItem, ["session", "job_key"], [(a.session_id, "k1"), (c.session_id, "k3")]
    )

    updated = MissionItem.objects.filter(cond, status="pending").update(job_key="", session=None)

    assert updated == 2
    assert snapshot(MissionItem, [a.pk, b.pk, c.pk, d.pk], ["session", "job_key"]) == [
        (a.session_id, "k0"),
        (None, ""),
        (c.session_id, "k2"),
        (None, ""),
    ]


def test_rows_in_locks_rows_with_select_for_update() -> None:
    mission = factories.MissionFactory()
    sessions = [
        factories.BrowserSessionFactory(mission=mission, job_key=f"j{i}", locked_by="me")
        for i in range(3)
    ]
    BrowserSession.objects.filter(pk=sessions[2].pk).update(locked_by="someone else")
    cond = pgbatch.rows_in(
        BrowserSession,
        ["pk", "lease_token", "job_key"],
        [(s.pk, s.lease_token, s.job_key) for s in sessions],
    )

    with transaction.atomic():
        live = list(
            BrowserSession.objects.filter(cond, locked_by="me")
            .order_by("id")
            .select_for_update(of=("self",))
            .values_list("id", flat=True)
        )

    assert live == [sessions[0].pk, sessions[1].pk]


def test_rows_in_combines_with_or() -> None:
    plain = [factories.MissionFactory(status=MissionStatus.QUEUED) for _ in range(3)]
    leased = [factories.MissionFactory(status=MissionStatus.QUEUED) for _ in range(3)]
    Mission.objects.filter(pk__in=[m.pk for m in leased]).update(lease_token=7)
    queued = MissionStatus.QUEUED.value
    two = pgbatch.rows_in(
        Mission,
        ["pk", "status"],
        [(plain[0].pk, queued), (plain[1].pk, MissionStatus.FINALIZADO.value)],
    )
    three = pgbatch.rows_in(
        Mission,
        ["pk", "status", "lease_token"],
        [(leased[0].pk, queued, 7), (leased[1].pk, queued, 8), (leased[2].pk, queued, 7)],
    )
    none = pgbatch.rows_in(Mission, ["pk", "status"], [])

    assert ids(Mission.objects.filter(two | three)) == {plain[0].pk, leased[0].pk, leased[2].pk}
    assert ids(Mission.objects.filter(none | three)) == {leased[0].pk, leased[2].pk}
    assert ids(Mission.objects.filter(two | none)) == {plain[0].pk}
    assert ids(Mission.objects.filter(three, pk__gt=leased[0].pk)) == {leased[2].pk}


def test_rows_in_matches_a_null_foreign_key_as_the_orm_does(keyed: list[MissionItem]) -> None:
    a, b, *_ = keyed
    MissionItem.objects.filter(pk__in=[a.pk, b.pk]).update(session=None)
    cond = pgbatch.rows_in(MissionItem, ["session", "job_key"], [(None, "k0"), (None, "k1")])

    assert ids(MissionItem.objects.filter(cond)) == {a.pk, b.pk}


def test_rows_in_does_not_match_a_longer_string_cut_to_the_column(
    keyed: list[MissionItem],
) -> None:
    a, b, *_ = keyed
    MissionItem.objects.filter(pk=a.pk).update(job_key="k" * 128)
    cond = pgbatch.rows_in(MissionItem, ["pk", "job_key"], [(a.pk, "k" * 129), (b.pk, "nope")])

    assert ids(MissionItem.objects.filter(cond)) == set()


def test_ids_in_works_inside_a_subquery() -> None:
    rows = items(3)
    sub = MissionItem.objects.filter(pgbatch.ids_in(MissionItem, [rows[0].pk, rows[1].pk]))

    assert ids(Mission.objects.filter(pk__in=sub.values("mission_id"))) == {rows[0].mission_id}


def test_ids_in_selects_exactly_the_given_ids() -> None:
    rows = items(5)
    wanted = [rows[0].pk, rows[2].pk, rows[3].pk]

    assert ids(MissionItem.objects.filter(pgbatch.ids_in(MissionItem, wanted))) == set(wanted)
    assert ids(MissionItem.objects.filter(pgbatch.ids_in(MissionItem, []))) == set()
    assert ids(MissionItem.objects.filter(pgbatch.ids_in(MissionItem, [rows[1].pk]))) == {
        rows[1].pk
    }
    missing = max(r.pk for r in rows) + 1000
    assert ids(MissionItem.objects.filter(pgbatch.ids_in(MissionItem, [rows[4].pk, missing]))) == {
        rows[4].pk
    }


def test_ids_in_drives_updates_and_locks_and_combines() -> None:
    rows = items(4)
    first_two = pgbatch.ids_in(MissionItem, [rows[0].pk, rows[1].pk])

    updated = MissionItem.objects.filter(first_two, status="pending").update(
        status="done", finished_at=NOW
    )
    assert updated == 2
    assert ids(MissionItem.objects.filter(status="done")) == {rows[0].pk, rows[1].pk}

    with transaction.atomic():
        locked = list(
            MissionItem.objects.filter(pgbatch.ids_in(MissionItem, [rows[3].pk, rows[2].pk]))
            .order_by("id")
            .select_for_update()
            .values_list("id", flat=True)
        )
    assert locked == [rows[2].pk, rows[3].pk]

    either = first_two | pgbatch.rows_in(
        MissionItem, ["pk", "status"], [(rows[2].pk, "pending"), (rows[3].pk, "done")]
    )
    assert ids(MissionItem.objects.filter(either)) == {rows[0].pk, rows[1].pk, rows[2].pk}


@pytest.mark.postgres
def test_execute_unnest_update_returns_the_rowcount() -> None:
    rows = items(3)
    MissionItem.objects.filter(pk=rows[2].pk).update(status="done")
    table = connection.ops.quote_name(MissionItem._meta.db_table)

    count = pgbatch.execute_unnest(
        f"UPDATE {table} AS t SET job_key = v.job_key, finished_at = v.at FROM {{rows}} "
        "WHERE t.id = v.id AND t.status = %(pending)s",
        {
            "id": ("bigint", [r.pk for r in rows]),
            "job_key": ("text", ["j0", "j1", "j2"]),
            "at": ("timestamptz", [NOW, None, NOW]),
        },
        {"pending": "pending"},
    )

    assert count == 2
    assert snapshot(MissionItem, [r.pk for r in rows], ["job_key", "finished_at"]) == [
        ("j0", NOW),
        ("j1", None),
        ("", None),
    ]


@pytest.mark.postgres
def test_execute_unnest_returning_gives_rows() -> None:
    rows = items(3)
    table = connection.ops.quote_name(MissionItem._meta.db_table)
    sql = (
        f"UPDATE {table} AS t SET attempts = t.attempts + v.n FROM {{rows}} "
        "WHERE t.id = v.id AND t.url LIKE %(like)s RETURNING t.id, t.attempts"
    )

    returned = pgbatch.execute_unnest(
        sql,
        {"id": ("bigint", [r.pk for r in rows]), "n": ("int", [1, 2, 3])},
        {"like": "%/p/%"},
    )
    nothing = pgbatch.execute_unnest(
        sql, {"id": ("bigint", [rows[0].pk]), "n": ("int", [1])}, {"like": "nope"}
    )

    assert sorted(returned) == [(rows[0].pk, 1), (rows[1].pk, 2), (rows[2].pk, 3)]
    assert nothing == []


def test_values_of_plain_fields_go_as_they_are_and_others_are_prepared() -> None:
    # Ints for an integer field or a foreign key, strs for a char field: sent unchanged
    # (the same list). Anything else goes through the field's own preparation.
    item = MissionItem._meta
    ints = [3, 1, 2]
    assert pgbatch._prepared(item.get_field("id"), ints) is ints
    assert pgbatch._prepared(item.get_field("session"), ints) is ints
    keys = ["m1-a1-s1-j1", "m1-a1-s1-j2"]
    assert pgbatch._prepared(item.get_field("job_key"), keys) is keys
    # A str for an integer column, or a None, is converted (or kept NULL) as the ORM does.
    assert pgbatch._prepared(item.get_field("session"), ["4", None]) == [4, None]
    assert pgbatch._array_of(item.get_field("session"), ["4", None]) == ("bigint[]", "{4,NULL}")
    # A subclass of a plain field with its own preparation is never skipped.
    secret = WebhookEndpoint._meta.get_field("secret")
    prepared = pgbatch._prepared(secret, ["s3cr3t"])
    assert prepared != ["s3cr3t"] and prepared[0].startswith("fernet:")


HARD_TEXTS = ['a"b', "c\\d", "", "NULL", "{x,y}", " lead and trail ", "é\nç", '\\"', ",", "}"]


def test_arrays_of_ints_strs_and_nulls_go_as_literals_postgresql_reads_back() -> None:
    assert pgbatch.array([3, -1, 2]) == "{3,-1,2}"
    assert pgbatch.array([]) == "{}"
    texts = [*HARD_TEXTS, None]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::bigint[], %s::text[], %s::text[]",
            [pgbatch.array([2**40, -7, None]), pgbatch.array(texts), pgbatch.array([])],
        )
        assert cursor.fetchone() == ([2**40, -7, None], texts, [])


def test_arrays_of_other_values_go_as_lists() -> None:
    # psycopg dumps these (bools, naive datetimes, floats) as it always did.
    naive = NOW.replace(tzinfo=None)
    for values in ([True, False], [naive, None], [NOW, naive], [1.5], [1, True]):
        assert pgbatch.array(values) is values


def test_aware_datetimes_go_as_literals_that_keep_the_instant() -> None:
    sao_paulo = dt.timezone(dt.timedelta(hours=-3))
    times = [
        NOW,
        dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=sao_paulo),
        dt.datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=dt.timezone(dt.timedelta(minutes=345))),
        None,
    ]
    literal = pgbatch.array(times)
    assert isinstance(literal, str) and literal.startswith('{"2026-06-01T12:00:00+00:00"')
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz[]", [literal])
        assert cursor.fetchone()[0] == times


def event_row(mission: Mission, **fields: Any) -> dict[str, Any]:
    return {"mission_id": mission.pk, "kind": "info", "created_at": NOW, **fields}


def test_insert_writes_rows_as_bulk_create_does() -> None:
    from orchestrator.models import MissionEvent

    mission = factories.MissionFactory()
    rows = [
        event_row(mission, message=text, data={"t": text, "n": [1, None]}, attempt=i)
        for i, text in enumerate(HARD_TEXTS, start=1)
    ]
    rows.append(event_row(mission))  # every other field takes its default
    rows.append({"mission": mission.pk, "kind": "error", "created_at": EARLIER, "data": []})
    fields = ["kind", "created_at", "from_status", "to_status", "attempt", "error_code"]
    fields += ["message", "actor", "data"]
    pgbatch.insert(MissionEvent, rows)
    ours = list(MissionEvent.objects.order_by("id").values_list(*fields))
    MissionEvent.objects.all().delete()
    MissionEvent.objects.bulk_create(
        MissionEvent(**{k if k != "mission" else "mission_id": v for k, v in row.items()})
        for row in rows
    )
    assert ours == list(MissionEvent.objects.order_by("id").values_list(*fields))
    assert len(ours) == len(HARD_TEXTS) + 2


def test_insert_of_nothing_or_one_row() -> None:
    from orchestrator.models import MissionEvent

    mission = factories.MissionFactory()
    pgbatch.insert(MissionEvent, [])
    pgbatch.insert(MissionEvent, [event_row(mission, message="só")])
    assert list(MissionEvent.objects.values_list("message", "created_at")) == [("só", NOW)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps any length")
def test_insert_of_a_string_longer_than_its_column_fails_and_writes_nothing() -> None:
    from orchestrator.models import MissionEvent

    mission = factories.MissionFactory()
    rows = [event_row(mission), event_row(mission, kind="x" * 17)]
    with pytest.raises(DataError), transaction.atomic():
        pgbatch.insert(MissionEvent, rows)
    assert not MissionEvent.objects.exists()


def test_by_pk_gives_each_row_its_value_and_null_to_others() -> None:
    rows = items(4)
    first, second, third, other = (r.pk for r in rows)
    keys = {first: 'k"1', second: "k\\2", third: "k,3 {x}"}
    MissionItem.objects.filter(pk__in=[*keys, other]).update(
        job_key=Coalesce(pgbatch.by_pk(MissionItem, keys, models.CharField()), Value("none")),
        attempts=Coalesce(
            pgbatch.by_pk(MissionItem, {first: 7, second: 2}, models.IntegerField()), Value(0)
        ),
    )
    got = dict(
        MissionItem.objects.filter(pk__in=[first, second, third, other]).values_list(
            "pk", "job_key"
        )
    )
    assert got == {**keys, other: "none"}
    attempts = dict(MissionItem.objects.values_list("pk", "attempts"))
    assert (attempts[first], attempts[second], attempts[third]) == (7, 2, 0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps any length")
def test_by_pk_over_a_string_longer_than_its_column_fails_as_the_orm_would() -> None:
    # Never cut to the column's length (a cast to varchar(n) would cut it quietly).
    row = items(1)[0]
    too_long = "x" * (MissionItem._meta.get_field("job_key").max_length + 1)  # type: ignore[operator]
    with pytest.raises(DataError), transaction.atomic():
        MissionItem.objects.filter(pk=row.pk).update(
            job_key=pgbatch.by_pk(MissionItem, {row.pk: too_long}, models.CharField())
        )


def test_raw_rows_equal_values_list_for_integer_and_text_columns() -> None:
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    rows = items(4)
    for row, key in zip(rows, HARD_TEXTS, strict=False):
        MissionItem.objects.filter(pk=row.pk).update(job_key=key, attempts=len(key) % 3)
    plain = MissionItem.objects.order_by("id").values_list("mission_id", "job_key", "id", "url")
    assert pgbatch.raw_rows(plain) == list(plain)
    ranked = (
        MissionItem.objects.annotate(
            n=Window(RowNumber(), partition_by=[F("mission_id")], order_by=[F("attempts"), F("id")])
        )
        .filter(n__lte=3)
        .values_list("mission_id", "id", "job_key", "n")
    )
    assert sorted(pgbatch.raw_rows(ranked)) == sorted(ranked)
    assert len(pgbatch.raw_rows(ranked)) == 3


def test_count_by_pk_gives_each_row_its_count_zero_to_others_and_one_value_as_a_constant() -> None:
    first, second, other = (r.pk for r in items(3))
    assert isinstance(pgbatch.count_by_pk(MissionItem, {first: 2, second: 2}), Value)
    MissionItem.objects.update(attempts=models.F("attempts") + 10)
    MissionItem.objects.filter(pk__in=[first, second, other]).update(
        attempts=models.F("attempts") + pgbatch.count_by_pk(MissionItem, {first: 3, second: 1})
    )
    attempts = dict(MissionItem.objects.values_list("pk", "attempts"))
    assert (attempts[first], attempts[second], attempts[other]) == (13, 11, 10)
