"""The audit log: who changed what (field names, never values), append-only, read-only
in the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AppendOnly, AuditLog
from registry import config
from registry.models import Proxy, Worker
from tests import factories

pytestmark = pytest.mark.django_db
SECRET = "canary-audit-77f1"


def entries(**filters: Any) -> list[AuditLog]:
    return list(AuditLog.objects.filter(**filters).order_by("id"))


def test_an_api_change_records_the_user_and_the_changed_field_names(
    admin_api: APIClient,
) -> None:
    created = admin_api.post(
        "/api/workers/",
        {"name": "w1", "base_url": "http://127.0.0.1:9", "api_key": SECRET},
        format="json",
    ).json()
    admin_api.patch(
        f"/api/workers/{created['id']}/",
        {"base_url": "http://127.0.0.2:9", "api_key": SECRET + "-2", "max_sessions": 3},
        format="json",
    )

    create, update = entries(model="registry.worker")
    assert (create.action, create.actor, create.object_id) == (
        "create",
        admin_api.user.username,
        str(created["id"]),
    )
    assert create.actor_id == admin_api.user.pk
    assert update.action == "update"
    assert update.fields == ["api_key", "base_url", "max_sessions"]
    dumped = str(list(AuditLog.objects.values()))
    assert SECRET not in dumped


def test_a_save_without_changes_writes_nothing() -> None:
    worker = factories.WorkerFactory()
    before = AuditLog.objects.count()

    Worker.objects.get(pk=worker.pk).save()

    assert AuditLog.objects.count() == before


def test_deletes_and_config_changes_are_recorded(admin_api: APIClient) -> None:
    proxy = factories.ProxyFactory(password=SECRET)

    admin_api.delete(f"/api/proxies/{proxy.pk}/")
    admin_api.patch("/api/config/max_retries/", {"value": 4}, format="json")

    assert entries(model="registry.proxy")[-1].action == "delete"
    assert entries(model="registry.proxy")[-1].object_repr == str(proxy)
    assert entries(model="registry.configentry")[-1].actor == admin_api.user.username
    assert config.load().max_retries == 4


def test_machine_changes_are_attributed_to_the_system() -> None:
    worker = factories.WorkerFactory()
    worker.max_sessions = 2
    worker.save()

    assert entries(model="registry.worker")[-1].actor == "system"
    assert entries(model="registry.worker")[-1].actor_id is None


def test_admin_and_dashboard_changes_name_their_user(client: Client) -> None:
    admin_user = factories.UserFactory(role="admin", is_staff=True, is_superuser=True)
    worker = factories.WorkerFactory(api_key="")
    client.force_login(admin_user)

    client.post(f"/recursos/workers/{worker.pk}/alternar/")  # a queryset update: no signal
    client.post(
        f"/admin/registry/worker/{worker.pk}/change/",
        {"name": "renamed", "base_url": worker.base_url, "max_sessions": 8, "providers": "[]"},
    )

    update = entries(model="registry.worker", action="update")[-1]
    assert update.actor == admin_user.username
    assert "name" in update.fields


def test_logins_failures_and_role_changes_are_recorded(client: Client) -> None:
    user = factories.UserFactory(username="ana", role="viewer")

    client.post("/login/", {"username": "ana", "password": "errada"})
    client.post("/login/", {"username": "ana", "password": "senha-forte-123"})
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get_or_create(name="operator")[0])

    failed = entries(action="login_failed")[-1]
    assert failed.data == {"username": "ana"} and failed.ip == "127.0.0.1"
    assert entries(action="login")[-1].actor == "ana"
    assert entries(model="auth.user", action="update")[-1].fields == ["groups"]
    assert "senha" not in str(list(AuditLog.objects.values()))


def test_tokens_are_audited_without_their_key(admin_api: APIClient) -> None:
    from registry.models import ApiToken

    token = ApiToken.objects.get(user=admin_api.user)
    key = admin_api._credentials["HTTP_AUTHORIZATION"].split()[1]

    entry = entries(model="registry.apitoken")[-1]
    assert entry.action == "create"
    assert key not in entry.object_repr
    assert token.digest not in str(entry.data) + entry.object_repr


def test_rows_cannot_be_changed_or_deleted_by_the_application() -> None:
    factories.WorkerFactory()
    entry = AuditLog.objects.first()
    assert entry is not None

    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        AuditLog.objects.update(actor="x")
    with pytest.raises(AppendOnly):
        AuditLog.objects.all().delete()


def test_the_database_refuses_updates_too() -> None:
    factories.WorkerFactory()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlog SET actor = 'mallory'")
    assert not AuditLog.objects.filter(actor="mallory").exists()


@pytest.mark.postgres
def test_postgres_refuses_deletes_too() -> None:
    factories.WorkerFactory()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditlog")
    assert AuditLog.objects.exists()


def test_the_admin_shows_the_log_read_only(client: Client) -> None:
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    factories.ProxyFactory(password=SECRET)
    entry = entries(model="registry.proxy")[-1]

    listing = client.get("/admin/audit/auditlog/")
    detail = client.get(f"/admin/audit/auditlog/{entry.pk}/change/")

    assert listing.status_code == detail.status_code == 200
    assert client.get("/admin/audit/auditlog/add/").status_code == 403
    assert client.post(f"/admin/audit/auditlog/{entry.pk}/delete/").status_code == 403
    assert SECRET not in listing.content.decode() + detail.content.decode()
    assert Proxy.objects.exists()


def test_bulk_enable_and_disable_are_recorded_per_row(admin_api: APIClient) -> None:
    proxies = [factories.ProxyFactory(external_id=f"px-bulk-{i}") for i in range(3)]
    before = AuditLog.objects.count()

    response = admin_api.post(
        "/api/proxies/bulk/", {"action": "disable", "ids": [p.pk for p in proxies]}, format="json"
    )

    assert response.status_code == 200, response.content
    rows = AuditLog.objects.order_by("id")[before:]
    assert {(r.object_id, tuple(r.fields)) for r in rows} == {
        (str(p.pk), ("enabled",)) for p in proxies
    }
    assert all(r.actor_id == admin_api.user.pk and r.data == {"bulk": True} for r in rows)
    assert not Proxy.objects.filter(enabled=True).exists()
