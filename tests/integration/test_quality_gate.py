"""Quality gate before FINALIZADO: per-site rules; failing missions finish flagged
"precisa de revisão" with the failed rules, filterable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator import actions, events, quality
from orchestrator.models import Mission, MissionEvent, WebhookDelivery, WebhookEndpoint
from orchestrator.states import MissionStatus
from registry.models import SiteConfig
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter
from tests.integration.engine_helpers import Fleet, build_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Events published inside a test's rolled-back transaction leave NOTIFY wake-ups
    # queued on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


def urls(n: int) -> list[str]:
    return [f"https://example.com/p/{i}" for i in range(n)]


@pytest.fixture
def fleet(fake_worker: FakeWorker, fake_writer: FakeWriter) -> Fleet:
    return build_fleet(fake_worker, fake_writer, overrides={"max_item_attempts": 1})


def set_rules(fleet: Fleet, **rules: Any) -> None:
    SiteConfig.objects.filter(pk=fleet.site.pk).update(quality_rules=rules)


def test_a_mission_within_its_rules_finishes_clean(fleet: Fleet) -> None:
    set_rules(fleet, min_success_ratio=0.9, required_fields=["title"], required_fields_min_pct=100)
    mission = fleet.drive_to(actions.create_mission(name="Ok", urls=urls(10)), "FINALIZADO")

    assert mission.needs_review is False and mission.review_failures == []


def test_failing_rules_finish_finalizado_flagged_with_every_failed_rule(fleet: Fleet) -> None:
    set_rules(
        fleet, min_success_ratio=0.9, required_fields=["price", "title"], required_fields_min_pct=80
    )
    fleet.fake_worker.fail_items = {u: "http_error" for u in urls(10)[:3]}
    fleet.fake_worker.data_for = lambda item: {
        "title": "x",
        "price": None if int(item["item_id"]) % 2 else 9.9,
    }
    endpoint = WebhookEndpoint.objects.create(
        name="q", url="http://127.0.0.1:9/q", secret="k" * 16, events=["quality.failed"]
    )

    mission = fleet.drive_to(actions.create_mission(name="Ruim", urls=urls(10)), "FINALIZADO")

    assert mission.status == MissionStatus.FINALIZADO
    assert mission.needs_review is True
    rules = {f["rule"]: f for f in mission.review_failures}
    assert set(rules) == {"min_success_ratio", "required_fields"}
    assert rules["min_success_ratio"]["actual"] == 0.7
    assert rules["min_success_ratio"]["message"].startswith(
        "taxa de sucesso 70% abaixo do mínimo 90%"
    )
    assert rules["required_fields"]["message"].startswith("campo 'price' presente em ")
    assert fleet.fake_writer.stored_count(mission.pk) == 7  # the data is stored anyway
    assert MissionEvent.objects.filter(
        mission=mission, message__startswith="Precisa de revisão: taxa de sucesso 70%"
    ).exists()
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event="quality.failed").count() == 1


def test_record_count_below_the_recent_average_of_the_domain_fails(fleet: Fleet) -> None:
    now = timezone.now()
    for n in (100, 100, 100):
        factories.MissionFactory(
            domain="example.com", status="FINALIZADO", records_delivered=n, finalizado_at=now
        )
    set_rules(fleet, min_records_pct_of_recent=50, recent_missions=3)

    small = fleet.drive_to(actions.create_mission(name="Pouco", urls=urls(10)), "FINALIZADO")

    (failure,) = small.review_failures
    assert failure["rule"] == "min_records_pct_of_recent"
    assert failure["message"] == (
        "10 registros, abaixo de 50% da média 100 das últimas 3 missões de example.com"
    )


def test_rules_are_validated_in_the_strategy_api(admin_api: APIClient) -> None:
    bad = admin_api.post(
        "/api/site-configs/",
        {"domain": "loja.com", "quality_rules": {"min_success_ratio": 2, "oops": 1}},
        format="json",
    )
    good = admin_api.post(
        "/api/site-configs/",
        {"domain": "loja.com", "quality_rules": {"required_fields": ["price"]}},
        format="json",
    )

    assert bad.status_code == 400 and "quality_rules" in bad.json()["error"]["fields"]
    assert good.status_code == 201, good.content
    assert good.json()["quality_rules"] == {"required_fields": ["price"]}
    assert quality.Rules.parse({"min_success_ratio": 0.5}).min_success_ratio == 0.5


def test_flagged_missions_are_filterable_and_can_be_marked_reviewed(
    viewer_api: APIClient, operator_api: APIClient, client: Client
) -> None:
    flagged = factories.MissionFactory(
        status="FINALIZADO",
        needs_review=True,
        review_failures=[{"rule": "min_success_ratio", "message": "taxa baixa"}],
    )
    factories.MissionFactory(status="FINALIZADO")

    listed = viewer_api.get("/api/missions/?needs_review=true").json()["results"]
    assert [m["id"] for m in listed] == [flagged.pk]
    assert listed[0]["review_failures"][0]["message"] == "taxa baixa"

    client.force_login(factories.UserFactory(role="viewer"))
    assert client.get("/missoes/").content.decode().count("data-needs-review") == 1
    page = client.get(f"/missoes/{flagged.pk}/").content.decode()
    assert "Precisa de revisão" in page and "taxa baixa" in page

    assert viewer_api.post(f"/api/missions/{flagged.pk}/reviewed/").status_code == 403
    done = operator_api.post(f"/api/missions/{flagged.pk}/reviewed/")
    assert done.status_code == 200 and done.json()["needs_review"] is False
    assert Mission.objects.filter(needs_review=True).count() == 0


def test_admin_filters_and_shows_failed_rules(client: Client) -> None:
    user = factories.UserFactory(role="admin")
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    flagged = factories.MissionFactory(
        status="FINALIZADO",
        needs_review=True,
        review_failures=[{"rule": "required_fields", "message": "campo 'price' ausente"}],
    )

    listed = client.get("/admin/orchestrator/mission/?needs_review__exact=1")
    assert listed.status_code == 200 and f">{flagged.name}<" in listed.content.decode()
    detail = client.get(f"/admin/orchestrator/mission/{flagged.pk}/change/").content.decode()
    assert "campo &#x27;price&#x27; ausente" in detail
