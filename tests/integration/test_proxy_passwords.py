"""A proxy's password never follows it to another address, and an import that omits
the password keeps the stored one (issue #18, point 9)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from registry.models import Proxy
from tests import factories

pytestmark = pytest.mark.django_db
SECRET = "proxy-secret-pass"


def entry(proxy: Proxy, **changes: Any) -> dict[str, Any]:
    base = {
        "id": proxy.external_id,
        "type": proxy.type,
        "scheme": proxy.scheme,
        "host": proxy.host,
        "port": proxy.port,
        "username": proxy.username,
        "country": proxy.country,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    "change", [{"host": "198.51.100.9"}, {"port": 9999}, {"username": "outro"}]
)
def test_changing_the_address_without_the_password_is_refused(
    admin_api: APIClient, change: dict[str, Any]
) -> None:
    proxy = factories.ProxyFactory()

    response = admin_api.patch(f"/api/proxies/{proxy.pk}/", change, format="json")

    assert response.status_code == 400
    assert "Re-enter the password" in str(response.json()["error"]["fields"]["password"])
    proxy.refresh_from_db()
    assert proxy.password == SECRET


def test_changing_the_address_with_the_password_or_other_fields_alone_works(
    admin_api: APIClient,
) -> None:
    proxy = factories.ProxyFactory()

    moved = {"host": "198.51.100.9", "password": "nova-senha"}
    assert admin_api.patch(f"/api/proxies/{proxy.pk}/", moved, format="json").status_code == 200
    same = {"host": "198.51.100.9", "enabled": False}
    assert admin_api.patch(f"/api/proxies/{proxy.pk}/", same, format="json").status_code == 200

    proxy.refresh_from_db()
    assert (proxy.host, proxy.password, proxy.enabled) == ("198.51.100.9", "nova-senha", False)


def test_an_import_without_a_password_keeps_the_stored_one(admin_api: APIClient) -> None:
    proxy = factories.ProxyFactory()

    response = admin_api.post("/api/proxies/import/", [entry(proxy, country="US")], format="json")

    assert response.json()["updated"] == 1, response.json()
    proxy.refresh_from_db()
    assert (proxy.country, proxy.password) == ("US", SECRET)


def test_an_import_that_moves_the_proxy_drops_the_password(admin_api: APIClient) -> None:
    proxy = factories.ProxyFactory()

    response = admin_api.post(
        "/api/proxies/import/", [entry(proxy, host="198.51.100.9")], format="json"
    )

    assert response.json()["updated"] == 1, response.json()
    proxy.refresh_from_db()
    assert (proxy.host, proxy.password) == ("198.51.100.9", "")


def test_an_import_with_a_password_replaces_it(admin_api: APIClient) -> None:
    proxy = factories.ProxyFactory()

    admin_api.post("/api/proxies/import/", [entry(proxy, password="outra")], format="json")

    proxy.refresh_from_db()
    assert proxy.password == "outra"
