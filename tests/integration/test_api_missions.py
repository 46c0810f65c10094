"""/api/missions/ and /api/recurring-missions/."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.models import Mission, MissionEvent, MissionItem, RecurringMission
from orchestrator.states import ItemStatus, MissionStatus
from tests import factories
from tests.patience import Deadline

pytestmark = [
    pytest.mark.django_db,
    # Settings issue reported to the lead: whitenoise warns when STATIC_ROOT is absent.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

URL = "/api/missions/"


def walk(client: APIClient, url: str) -> list[list[dict[str, Any]]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.data
        pages.append(response.data["results"])
        url = response.data["next"]
    return pages


def count_queries(fn: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


# Create


def test_operator_creates_a_queued_mission_with_domain_derived_and_duplicates_dropped(
    operator_api: APIClient,
) -> None:
    response = operator_api.post(
        URL,
        {
            "name": "Preços",
            "urls": [
                "https://www.loja.com.br/a",
                "https://www.loja.com.br/b",
                "https://www.loja.com.br/a",
                "https://outra.com/x",
            ],
        },
        format="json",
    )

    assert response.status_code == 201, response.data
    body = response.data
    assert body["status"] == MissionStatus.QUEUED
    assert body["domain"] == "loja.com.br"
    assert body["counters"]["total_items"] == 3
    assert body["created_by"] == operator_api.user.username  # type: ignore[attr-defined]
    mission = Mission.objects.get(pk=body["id"])
    assert list(mission.items.order_by("id").values_list("url", flat=True)) == [
        "https://www.loja.com.br/a",
        "https://www.loja.com.br/b",
        "https://outra.com/x",
    ]
    assert mission.events.filter(to_status=MissionStatus.QUEUED).count() == 1


def test_create_uses_the_given_domain_priority_and_writer(operator_api: APIClient) -> None:
    writer = factories.WriterFactory.create()

    response = operator_api.post(
        URL,
        {
            "name": "x",
            "domain": "WWW.Example.COM",
            "urls": ["https://a.example.com/1"],
            "priority": 7,
            "writer": writer.pk,
        },
        format="json",
    )

    assert response.status_code == 201, response.data
    assert response.data["domain"] == "example.com"
    assert response.data["priority"] == 7
    assert response.data["writer"] == {"id": writer.pk, "name": writer.name}


def test_create_rejects_bad_urls_naming_each_bad_index(operator_api: APIClient) -> None:
    response = operator_api.post(
        URL,
        {"name": "x", "urls": ["https://ok.com/", "ftp://nope", "https://ok.com/2", "", 5]},
        format="json",
    )

    assert response.status_code == 400
    error = response.data["error"]
    assert error["code"] == "invalid_request"
    assert set(error["fields"]["urls"]) == {"1", "3", "4"}
    assert Mission.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x", "urls": "https://a.com/"}, "urls"),
        ({"name": "  ", "urls": ["https://a.com/"]}, "name"),
        ({"name": "x", "urls": ["https://a.com/"], "writer": 999_999}, "writer"),
        ({"name": "x", "urls": ["https://a.com/"], "priority": 10**12}, "priority"),
        ({"name": "x", "urls": ["https://a.com/"], "domain": "not a domain!"}, "domain"),
    ],
)
def test_create_rejects_invalid_input_with_the_field_named(
    operator_api: APIClient, payload: dict[str, Any], field: str
) -> None:
    response = operator_api.post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.data["error"]["fields"]
    assert Mission.objects.count() == 0


@pytest.mark.parametrize("payload", [{"name": "x", "urls": []}, {"name": "x"}])
def test_no_urls_asks_to_resume_an_etl_run_refused_without_an_etl(
    operator_api: APIClient, payload: dict[str, Any]
) -> None:
    """No URLs means "resume the domain's ETL run" (docs/contracts/etl-api.md): without an
    ETL configured that is a clear 409 naming what to send instead."""
    response = operator_api.post(URL, payload, format="json")

    assert response.status_code == 409
    assert response.data["error"]["code"] == "etl_not_configured"
    assert "URLs" in response.data["error"]["message"]
    assert Mission.objects.count() == 0


def test_create_rejects_urls_with_nul_characters_or_broken_hosts(operator_api: APIClient) -> None:
    # A NUL is refused by the API's JSON parser, before the serializer, naming the item.
    response = operator_api.post(
        URL, {"name": "x", "urls": ["https://a.com/ok", "https://a.com/\x00"]}, format="json"
    )
    assert response.status_code == 400
    assert set(response.data["error"]["fields"]["urls"]) == {"1"}

    response = operator_api.post(
        URL, {"name": "x", "urls": ["https://a.com/ok", "x", "http://[::1/x"]}, format="json"
    )
    assert response.status_code == 400
    assert set(response.data["error"]["fields"]["urls"]) == {"1", "2"}


def test_create_rejects_a_disabled_writer(operator_api: APIClient) -> None:
    writer = factories.WriterFactory.create(enabled=False)

    response = operator_api.post(
        URL, {"name": "x", "urls": ["https://a.com/"], "writer": writer.pk}, format="json"
    )

    assert response.status_code == 400
    assert "writer" in response.data["error"]["fields"]


@pytest.fixture
def big_bodies(settings: Any) -> None:
    # 100k URLs are ~4 MB of JSON; Django's default limit is 2.5 MB (settings change asked).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("big_bodies")
def test_create_accepts_100k_urls_in_one_request(operator_api: APIClient) -> None:
    urls = [f"https://shop.example.com/product/{i}" for i in range(100_000)]

    budget = Deadline(60)  # counted in the machine's time (tests.patience)
    started = time.monotonic()
    response = operator_api.post(URL, {"name": "grande", "urls": urls}, format="json")
    elapsed = time.monotonic() - started
    over_budget = budget.expired()

    assert response.status_code == 201, response.data
    assert response.data["counters"]["total_items"] == 100_000
    assert MissionItem.objects.filter(mission_id=response.data["id"]).count() == 100_000
    # Well under a gunicorn worker timeout even on a loaded 2-core CI box (~8 s idle).
    assert not over_budget, f"100k URLs took {elapsed:.1f}s"


@pytest.mark.usefixtures("big_bodies")
def test_create_rejects_more_than_100k_distinct_urls(operator_api: APIClient) -> None:
    urls = [f"https://shop.example.com/p/{i}" for i in range(100_001)]

    response = operator_api.post(URL, {"name": "x", "urls": urls}, format="json")

    assert response.status_code == 400
    assert "urls" in response.data["error"]["fields"]


def test_a_body_over_the_upload_limit_is_a_413_not_a_crash(
    operator_api: APIClient, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    urls = [f"https://shop.example.com/p/{i}" for i in range(100)]

    response = operator_api.post(URL, {"name": "x", "urls": urls}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


# Permissions


@pytest.mark.parametrize(
    ("role", "expected"),
    [(None, 401), ("viewer", 403), ("operator", 201), ("admin", 201)],
)
def test_creating_a_mission_needs_operator(
    make_api_client: Callable[..., APIClient], role: str | None, expected: int
) -> None:
    client = make_api_client(role)

    response = client.post(URL, {"name": "x", "urls": ["https://a.com/"]}, format="json")

    assert response.status_code == expected
    if expected >= 400:
        assert "error" in response.data


@pytest.mark.parametrize(("role", "expected"), [(None, 401), ("viewer", 200), ("admin", 200)])
def test_reading_missions_needs_viewer(
    make_api_client: Callable[..., APIClient], role: str | None, expected: int
) -> None:
    mission = factories.MissionFactory.create()
    client = make_api_client(role)

    assert client.get(URL).status_code == expected
    assert client.get(f"{URL}{mission.pk}/").status_code == expected
    assert client.get(f"{URL}{mission.pk}/events/").status_code == expected
    assert client.get(f"{URL}{mission.pk}/items/").status_code == expected
    assert client.get(f"{URL}{mission.pk}/sessions/").status_code == expected


def test_list_and_detail_show_each_status_with_its_pt_br_label(viewer_api: APIClient) -> None:
    for status in MissionStatus:
        factories.MissionFactory.create(status=status)

    listed = viewer_api.get(URL).json()["results"]
    detail = viewer_api.get(f"{URL}{listed[0]['id']}/").json()

    assert {m["status"]: m["status_display"] for m in listed} == {
        s.value: str(s.label) for s in MissionStatus
    }
    assert detail["status_display"] == str(MissionStatus(detail["status"]).label)
    assert {m["status_display"] for m in listed} >= {"Na fila", "Finalizado", "Erro"}


@pytest.mark.parametrize(
    ("role", "expected"), [(None, 401), ("viewer", 403), ("operator", 200), ("admin", 200)]
)
def test_cancel_retry_and_bulk_need_operator(
    make_api_client: Callable[..., APIClient], role: str | None, expected: int
) -> None:
    queued = factories.MissionFactory.create()
    failed = factories.MissionFactory.create(status=MissionStatus.ERRO)
    other = factories.MissionFactory.create()
    client = make_api_client(role)

    assert client.post(f"{URL}{queued.pk}/cancel/").status_code == expected
    assert client.post(f"{URL}{failed.pk}/retry/").status_code == expected
    bulk = client.post(f"{URL}bulk/", {"action": "cancel", "ids": [other.pk]}, format="json")
    assert bulk.status_code == expected


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_missions_cannot_be_edited_or_deleted_through_the_api(
    admin_api: APIClient, method: str
) -> None:
    mission = factories.MissionFactory.create()

    response = getattr(admin_api, method)(
        f"{URL}{mission.pk}/", {"status": "FINALIZADO"}, format="json"
    )

    assert response.status_code == 405
    assert response.data["error"]["code"] == "method_not_allowed"
    mission.refresh_from_db()
    assert mission.status == MissionStatus.QUEUED


# Retrieve


def test_detail_shows_counters_progress_checkpoints_and_errors(viewer_api: APIClient) -> None:
    now = timezone.now()
    writer = factories.WriterFactory.create()
    mission = factories.MissionFactory.create(
        status=MissionStatus.EXTRAINDO,
        total_items=10,
        done_items=4,
        failed_items=1,
        records_delivered=40,
        attempt=2,
        atribuido_at=now,
        extraindo_at=now,
        wait_reason="Sem capacidade",
        error_code="SESSION_STUCK",
        error_message="travou",
        writer=writer,
    )

    body = viewer_api.get(f"{URL}{mission.pk}/").data

    assert body["progress"] == 0.5
    assert body["counters"] == {
        "total_items": 10,
        "done_items": 4,
        "failed_items": 1,
        "pending_items": 5,
        "records_delivered": 40,
        "session_rotations": 0,
    }
    assert body["checkpoints"]["atribuido_at"] is not None
    assert body["checkpoints"]["finalizado_at"] is None
    assert body["attempt"] == 2
    assert body["wait_reason"] == "Sem capacidade"
    assert (body["error_code"], body["error_message"]) == ("SESSION_STUCK", "travou")
    assert body["writer"]["id"] == writer.pk


def test_detail_of_a_missing_mission_is_404_in_the_error_shape(viewer_api: APIClient) -> None:
    response = viewer_api.get(f"{URL}999999/")

    assert response.status_code == 404
    assert response.data["error"]["code"] == "not_found"


# List: filters, search, ordering, pagination


def test_list_filters_by_one_or_several_statuses(viewer_api: APIClient) -> None:
    queued = factories.MissionFactory.create(status=MissionStatus.QUEUED)
    failed = factories.MissionFactory.create(status=MissionStatus.ERRO)
    factories.MissionFactory.create(status=MissionStatus.FINALIZADO)

    def ids(query: str) -> set[int]:
        response = viewer_api.get(f"{URL}?{query}")
        assert response.status_code == 200, response.data
        return {m["id"] for m in response.data["results"]}

    assert ids("status=QUEUED") == {queued.pk}
    assert ids("status=QUEUED&status=ERRO") == {queued.pk, failed.pk}
    assert ids("status=QUEUED,ERRO") == {queued.pk, failed.pk}


def test_list_rejects_an_unknown_status(viewer_api: APIClient) -> None:
    response = viewer_api.get(f"{URL}?status=RUNNING")

    assert response.status_code == 400
    assert "status" in response.data["error"]["fields"]


def test_list_filters_by_domain_and_creation_window(viewer_api: APIClient) -> None:
    old = factories.MissionFactory.create(domain="loja.com")
    recent = factories.MissionFactory.create(domain="loja.com")
    factories.MissionFactory.create(domain="outra.com")
    Mission.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()

    by_domain = viewer_api.get(URL, {"domain": "www.loja.com"}).data["results"]
    in_window = viewer_api.get(URL, {"domain": "loja.com", "created_after": since}).data["results"]
    before = viewer_api.get(URL, {"created_before": since}).data["results"]

    assert {m["id"] for m in by_domain} == {old.pk, recent.pk}
    assert [m["id"] for m in in_window] == [recent.pk]
    assert [m["id"] for m in before] == [old.pk]


@pytest.mark.parametrize(
    "value", ["2000-01-01T00:00:00", "2000-01-01", " 2000-01-01T00:00:00Z", ""]
)
def test_list_takes_only_the_documented_rfc_3339_date_time(
    viewer_api: APIClient, value: str
) -> None:
    """The schema says `format: date-time` (RFC 3339): the offset is required."""
    mission = factories.MissionFactory.create()

    refused = viewer_api.get(URL, {"created_after": value})
    accepted = viewer_api.get(URL, {"created_after": "2000-01-01T00:00:00Z"})

    assert refused.status_code == 400
    assert "created_after" in refused.data["error"]["fields"]
    assert [m["id"] for m in accepted.data["results"]] == [mission.pk]


def test_list_rejects_a_malformed_date(viewer_api: APIClient) -> None:
    response = viewer_api.get(URL, {"created_after": "ontem"})

    assert response.status_code == 400
    assert "created_after" in response.data["error"]["fields"]


def test_list_compares_any_valid_offset_in_utc(viewer_api: APIClient) -> None:
    # Regression: PostgreSQL refuses offsets beyond ±15:59 ("time zone displacement
    # out of range"), which made this a 500. RFC 3339 allows up to ±23:59.
    mission = factories.MissionFactory.create()
    created = mission.created_at.astimezone(dt.UTC)
    just_after = (created + dt.timedelta(seconds=1)).astimezone(
        dt.timezone(dt.timedelta(hours=20, minutes=46))
    )

    before = viewer_api.get(URL, {"created_before": just_after.isoformat()})
    after = viewer_api.get(URL, {"created_after": just_after.isoformat()})

    assert before.status_code == 200, before.content
    assert [m["id"] for m in before.data["results"]] == [mission.pk]
    assert after.status_code == 200, after.content
    assert after.data["results"] == []


@pytest.mark.parametrize(
    ("params", "kept"),
    [
        ({"created_after": "0001-01-01T00:00:00+20:46"}, True),  # before year 1 in UTC
        ({"created_before": "0001-01-01T00:00:00+20:46"}, False),
        ({"created_after": "9999-12-31T23:59:59-23:59"}, False),  # after year 9999 in UTC
        ({"created_before": "9999-12-31T23:59:59-23:59"}, True),
    ],
)
def test_list_takes_an_instant_beyond_the_calendar_as_beyond_every_row(
    viewer_api: APIClient, params: dict[str, str], kept: bool
) -> None:
    mission = factories.MissionFactory.create()

    response = viewer_api.get(URL, params)

    assert response.status_code == 200, response.content
    assert [m["id"] for m in response.data["results"]] == ([mission.pk] if kept else [])


def test_list_searches_name_and_domain(viewer_api: APIClient) -> None:
    by_name = factories.MissionFactory.create(name="Preços de TVs")
    by_domain = factories.MissionFactory.create(name="outra", domain="tvs.com.br")
    factories.MissionFactory.create(name="geladeiras")

    results = viewer_api.get(URL, {"search": "tvs"}).data["results"]

    assert {m["id"] for m in results} == {by_name.pk, by_domain.pk}


def test_cursor_pagination_walks_every_mission_once_newest_first(viewer_api: APIClient) -> None:
    missions = [factories.MissionFactory.create() for _ in range(7)]

    pages = walk(viewer_api, f"{URL}?page_size=3")

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [m["id"] for p in pages for m in p] == [m.pk for m in reversed(missions)]


def test_ordering_by_priority_pages_through_ties_without_gaps_or_repeats(
    viewer_api: APIClient,
) -> None:
    missions = [factories.MissionFactory.create(priority=i % 2) for i in range(9)]

    pages = walk(viewer_api, f"{URL}?ordering=-priority&page_size=2")

    seen = [m["id"] for p in pages for m in p]
    assert sorted(seen) == sorted(m.pk for m in missions)
    priorities = [m["priority"] for p in pages for m in p]
    assert priorities == sorted(priorities, reverse=True)


def test_list_query_count_does_not_grow_with_missions(viewer_api: APIClient) -> None:
    writer = factories.WriterFactory.create()
    user = factories.UserFactory.create()
    for _ in range(3):
        factories.MissionFactory.create(writer=writer, created_by=user)
    few = count_queries(lambda: viewer_api.get(URL))
    for _ in range(27):
        factories.MissionFactory.create(writer=factories.WriterFactory.create(), created_by=user)
    many = count_queries(lambda: viewer_api.get(URL))

    assert few == many


# Cancel and retry


def test_cancel_moves_a_queued_mission_to_cancelado(operator_api: APIClient) -> None:
    mission = factories.MissionFactory.create()

    response = operator_api.post(f"{URL}{mission.pk}/cancel/")

    assert response.status_code == 200, response.data
    assert response.data["status"] == MissionStatus.CANCELADO
    event = MissionEvent.objects.get(mission=mission, to_status=MissionStatus.CANCELADO)
    assert event.actor == operator_api.user.username  # type: ignore[attr-defined]


@pytest.mark.parametrize("state", [MissionStatus.FINALIZADO, MissionStatus.CANCELADO])
def test_cancelling_an_ended_mission_is_a_409(operator_api: APIClient, state: str) -> None:
    mission = factories.MissionFactory.create(status=state)

    response = operator_api.post(f"{URL}{mission.pk}/cancel/")

    assert response.status_code == 409
    assert response.data["error"]["code"] == "invalid_state"
    mission.refresh_from_db()
    assert mission.status == state


def test_retry_requeues_a_failed_mission_keeping_done_items(operator_api: APIClient) -> None:
    mission = factories.MissionFactory.create(status=MissionStatus.ERRO, n_items=3, attempt=3)
    items = list(mission.items.order_by("id"))
    MissionItem.objects.filter(pk=items[0].pk).update(status=ItemStatus.DONE)
    MissionItem.objects.filter(pk=items[1].pk).update(status=ItemStatus.FAILED)

    response = operator_api.post(f"{URL}{mission.pk}/retry/")

    assert response.status_code == 200, response.data
    assert response.data["status"] == MissionStatus.QUEUED
    assert response.data["attempt"] == 1
    statuses = list(mission.items.order_by("id").values_list("status", flat=True))
    assert statuses == [ItemStatus.DONE, ItemStatus.PENDING, ItemStatus.PENDING]


@pytest.mark.parametrize("state", [MissionStatus.QUEUED, MissionStatus.EXTRAINDO])
def test_retrying_a_mission_that_has_not_ended_is_a_409(
    operator_api: APIClient, state: str
) -> None:
    mission = factories.MissionFactory.create(status=state)

    response = operator_api.post(f"{URL}{mission.pk}/retry/")

    assert response.status_code == 409
    assert response.data["error"]["code"] == "invalid_state"


@pytest.mark.parametrize("pk", ["999999", "abc", "99999999999999999999999"])
def test_actions_on_a_missing_or_malformed_id_are_404(operator_api: APIClient, pk: str) -> None:
    assert operator_api.post(f"{URL}{pk}/cancel/").status_code == 404
    assert operator_api.get(f"{URL}{pk}/").status_code == 404
    assert operator_api.get(f"{URL}{pk}/items/").status_code == 404


def test_bulk_with_an_id_beyond_the_integer_range_is_a_400(operator_api: APIClient) -> None:
    response = operator_api.post(f"{URL}bulk/", {"action": "cancel", "ids": [2**70]}, format="json")

    assert response.status_code == 400
    assert "ids" in response.data["error"]["fields"]


# Nested lists


def test_events_are_listed_newest_first_and_paginated(viewer_api: APIClient) -> None:
    mission = factories.MissionFactory.create()
    events = [
        factories.MissionEventFactory.create(mission=mission, message=f"e{i}") for i in range(5)
    ]
    factories.MissionEventFactory.create()  # another mission's

    pages = walk(viewer_api, f"{URL}{mission.pk}/events/?page_size=2")

    assert [e["message"] for p in pages for e in p] == [e.message for e in reversed(events)]


def test_items_are_filtered_by_status_and_paginated_in_order(viewer_api: APIClient) -> None:
    mission = factories.MissionFactory.create(n_items=5)
    first, *_ = mission.items.order_by("id")
    MissionItem.objects.filter(pk=first.pk).update(status=ItemStatus.DONE)

    pending = walk(viewer_api, f"{URL}{mission.pk}/items/?status=pending&page_size=2")
    done = viewer_api.get(f"{URL}{mission.pk}/items/", {"status": "done"}).data["results"]

    assert [len(p) for p in pending] == [2, 2]
    ids = [i["id"] for p in pending for i in p]
    assert ids == sorted(ids)
    assert [i["id"] for i in done] == [first.pk]


def test_items_reject_an_unknown_status(viewer_api: APIClient) -> None:
    mission = factories.MissionFactory.create()

    response = viewer_api.get(f"{URL}{mission.pk}/items/", {"status": "QUEUED"})

    assert response.status_code == 400
    assert "status" in response.data["error"]["fields"]


def test_nested_lists_of_a_missing_mission_are_404(viewer_api: APIClient) -> None:
    for sub in ("events", "items", "sessions"):
        assert viewer_api.get(f"{URL}999999/{sub}/").status_code == 404


def test_mission_sessions_never_show_proxy_credentials(viewer_api: APIClient) -> None:
    session = factories.BrowserSessionFactory.create()

    response = viewer_api.get(f"{URL}{session.mission_id}/sessions/")

    assert [s["id"] for s in response.data["results"]] == [session.pk]
    assert response.data["results"][0]["proxy"]["external_id"] == session.proxy.external_id
    assert "proxy-secret-pass" not in response.content.decode()


def test_nested_list_query_counts_do_not_grow_with_rows(viewer_api: APIClient) -> None:
    mission = factories.MissionFactory.create(n_items=3)
    for _ in range(3):
        factories.MissionEventFactory.create(mission=mission)
        factories.BrowserSessionFactory.create(mission=mission)

    def counts() -> list[int]:
        return [
            count_queries(lambda sub=sub: viewer_api.get(f"{URL}{mission.pk}/{sub}/"))  # type: ignore[misc]
            for sub in ("events", "items", "sessions")
        ]

    few = counts()
    MissionItem.objects.bulk_create(
        MissionItem(mission=mission, url=f"https://example.com/more/{i}") for i in range(27)
    )
    for _ in range(27):
        factories.MissionEventFactory.create(mission=mission)
        factories.BrowserSessionFactory.create(mission=mission)

    assert counts() == few


# Bulk


def test_bulk_create_writes_every_mission(operator_api: APIClient) -> None:
    response = operator_api.post(
        f"{URL}bulk/",
        {
            "action": "create",
            "items": [
                {"name": "a", "urls": ["https://a.com/1"]},
                {"name": "b", "urls": ["https://b.com/1", "https://b.com/2"], "priority": 3},
            ],
        },
        format="json",
    )

    assert response.status_code == 201, response.data
    assert response.data["count"] == 2
    assert [m["name"] for m in response.data["results"]] == ["a", "b"]
    assert Mission.objects.count() == 2
    assert MissionItem.objects.count() == 3


def test_bulk_create_writes_nothing_when_one_entry_is_invalid(operator_api: APIClient) -> None:
    response = operator_api.post(
        f"{URL}bulk/",
        {
            "action": "create",
            "items": [
                {"name": "a", "urls": ["https://a.com/1"]},
                {"name": "b", "urls": ["https://b.com/1", "nope"]},
                {"urls": ["https://c.com/1"]},
            ],
        },
        format="json",
    )

    assert response.status_code == 400
    fields = response.data["error"]["fields"]["items"]
    assert set(fields) == {"1", "2"}
    assert fields["1"]["urls"] == {"1": "Must be an absolute http or https URL."}
    assert "name" in fields["2"]
    assert Mission.objects.count() == 0


def test_bulk_cancel_applies_to_every_listed_mission(operator_api: APIClient) -> None:
    missions = [factories.MissionFactory.create() for _ in range(3)]

    response = operator_api.post(
        f"{URL}bulk/", {"action": "cancel", "ids": [m.pk for m in missions]}, format="json"
    )

    assert response.status_code == 200, response.data
    assert response.data["count"] == 3
    assert set(Mission.objects.values_list("status", flat=True)) == {MissionStatus.CANCELADO}


def test_bulk_cancel_changes_nothing_when_one_mission_cannot_be_cancelled(
    operator_api: APIClient,
) -> None:
    queued = factories.MissionFactory.create()
    done = factories.MissionFactory.create(status=MissionStatus.FINALIZADO)
    other = factories.MissionFactory.create()

    response = operator_api.post(
        f"{URL}bulk/", {"action": "cancel", "ids": [queued.pk, done.pk, other.pk]}, format="json"
    )

    assert response.status_code == 409
    assert response.data["error"]["code"] == "invalid_state"
    assert set(response.data["error"]["fields"]) == {"1"}
    assert Mission.objects.filter(status=MissionStatus.QUEUED).count() == 2
    assert not MissionEvent.objects.filter(to_status=MissionStatus.CANCELADO).exists()


def test_bulk_retry_requeues_every_ended_mission(operator_api: APIClient) -> None:
    failed = factories.MissionFactory.create(status=MissionStatus.ERRO)
    cancelled = factories.MissionFactory.create(status=MissionStatus.CANCELADO)

    response = operator_api.post(
        f"{URL}bulk/", {"action": "retry", "ids": [failed.pk, cancelled.pk]}, format="json"
    )

    assert response.status_code == 200, response.data
    assert set(Mission.objects.values_list("status", flat=True)) == {MissionStatus.QUEUED}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"action": "delete", "ids": [1]}, "action"),
        ({"action": "cancel"}, "ids"),
        ({"action": "cancel", "ids": []}, "ids"),
        ({"action": "cancel", "ids": ["x"]}, "ids"),
        ({"action": "create", "items": []}, "items"),
        ({"action": "create", "items": ["not an object"]}, "items"),
    ],
)
def test_bulk_rejects_malformed_requests(
    operator_api: APIClient, payload: dict[str, Any], field: str
) -> None:
    response = operator_api.post(f"{URL}bulk/", payload, format="json")

    assert response.status_code == 400
    assert field in response.data["error"]["fields"]


def test_bulk_names_missing_and_repeated_ids_and_writes_nothing(operator_api: APIClient) -> None:
    mission = factories.MissionFactory.create()

    response = operator_api.post(
        f"{URL}bulk/", {"action": "cancel", "ids": [mission.pk, 999_999, mission.pk]}, format="json"
    )

    assert response.status_code == 400
    assert set(response.data["error"]["fields"]["ids"]) == {"1", "2"}
    mission.refresh_from_db()
    assert mission.status == MissionStatus.QUEUED


# Recurring missions

RURL = "/api/recurring-missions/"


def recurring_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "Diária",
        "cron": "0 6 * * *",
        "timezone": "America/Sao_Paulo",
        "urls": ["https://loja.com/a", "https://loja.com/a", "https://loja.com/b"],
    }
    payload.update(overrides)
    return payload


def test_operator_creates_a_recurring_mission_with_its_next_run(operator_api: APIClient) -> None:
    response = operator_api.post(RURL, recurring_payload(), format="json")

    assert response.status_code == 201, response.data
    row = RecurringMission.objects.get(pk=response.data["id"])
    assert row.urls == ["https://loja.com/a", "https://loja.com/b"]
    assert row.next_run_at is not None
    assert row.next_run_at > timezone.now()
    local = timezone.localtime(row.next_run_at, dt.timezone(dt.timedelta(hours=-3)))
    assert (local.hour, local.minute) == (6, 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),
        ({"cron": "0 6 31 2 *"}, "cron"),
        ({"cron": "@reboot"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"urls": ["nope"]}, "urls"),
        ({"name": " "}, "name"),
    ],
)
def test_recurring_mission_rejects_invalid_fields(
    operator_api: APIClient, overrides: dict[str, Any], field: str
) -> None:
    response = operator_api.post(RURL, recurring_payload(**overrides), format="json")

    assert response.status_code == 400
    assert field in response.data["error"]["fields"]
    assert not RecurringMission.objects.exists()


def test_changing_the_cron_recomputes_and_disabling_clears_the_next_run(
    operator_api: APIClient,
) -> None:
    row = factories.RecurringMissionFactory.create()

    hourly = operator_api.patch(f"{RURL}{row.pk}/", {"cron": "30 * * * *"}, format="json")
    row.refresh_from_db()
    assert hourly.status_code == 200, hourly.data
    assert row.next_run_at is not None and row.next_run_at.minute == 30

    disabled = operator_api.patch(f"{RURL}{row.pk}/", {"enabled": False}, format="json")
    row.refresh_from_db()
    assert disabled.status_code == 200
    assert row.next_run_at is None


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [(None, 401, 401), ("viewer", 200, 403), ("operator", 200, 204), ("admin", 200, 204)],
)
def test_recurring_missions_are_read_by_viewers_and_managed_by_operators(
    make_api_client: Callable[..., APIClient], role: str | None, read: int, write: int
) -> None:
    row = factories.RecurringMissionFactory.create()
    client = make_api_client(role)

    assert client.get(RURL).status_code == read
    assert client.delete(f"{RURL}{row.pk}/").status_code == write


def test_recurring_list_query_count_does_not_grow_with_rows(viewer_api: APIClient) -> None:
    writer = factories.WriterFactory.create()
    for _ in range(3):
        factories.RecurringMissionFactory.create(writer=writer)
    few = count_queries(lambda: viewer_api.get(RURL))
    for _ in range(27):
        factories.RecurringMissionFactory.create(writer=factories.WriterFactory.create())

    assert count_queries(lambda: viewer_api.get(RURL)) == few
