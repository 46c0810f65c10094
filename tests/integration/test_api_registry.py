from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from registry.models import Proxy, SiteConfig, Uploader, Worker, Writer
from tests import factories

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
KEY_CANARY = "canary-key-7f3a9c"
PASS_CANARY = "canary-pass-b81e2d"

FACTORIES: dict[str, Callable[..., Any]] = {
    "workers": factories.WorkerFactory,
    "writers": factories.WriterFactory,
    "uploaders": factories.UploaderFactory,
    "proxies": factories.ProxyFactory,
    "site-configs": lambda **kw: factories.SiteConfigFactory.create(
        domain=kw.pop("domain", None) or f"site{SiteConfig.objects.count()}.com", **kw
    ),
}
MODELS: dict[str, Any] = {
    "workers": Worker,
    "writers": Writer,
    "uploaders": Uploader,
    "proxies": Proxy,
    "site-configs": SiteConfig,
}


def payload(resource: str, n: int = 0) -> dict[str, Any]:
    bodies: dict[str, dict[str, Any]] = {
        "workers": {
            "name": f"w{n}",
            "base_url": f"http://10.0.0.{n + 1}:8000/api/v1",
            "api_key": KEY_CANARY,
            "providers": ["local"],
            "max_sessions": 4,
        },
        "writers": {"name": f"wr{n}", "base_url": f"http://10.0.1.{n + 1}/", "api_key": KEY_CANARY},
        "uploaders": {
            "name": f"up{n}",
            "base_url": f"https://up{n}.example.com",
            "api_key": KEY_CANARY,
        },
        "proxies": {
            "external_id": f"px-new-{n}",
            "type": "residential",
            "host": f"203.0.113.{n + 1}",
            "port": 8000,
            "username": "cliente",
            "password": PASS_CANARY,
            "country": "br",
        },
        "site-configs": {
            "domain": f"WWW.Loja{n}.com.br",
            "proxy_types": ["residential"],
            "countries": ["br"],
        },
    }
    return bodies[resource]


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def fields_of(response: Any) -> dict[str, Any]:
    return response.json()["error"].get("fields", {})


# -- permissions --------------------------------------------------------------------


@pytest.mark.parametrize("resource", list(FACTORIES))
def test_it_refuses_anonymous_requests_with_401(resource: str, anon_api: APIClient) -> None:
    row = FACTORIES[resource]()

    assert anon_api.get(f"/api/{resource}/").status_code == 401
    assert anon_api.get(f"/api/{resource}/{row.pk}/").status_code == 401
    assert anon_api.post(f"/api/{resource}/", payload(resource), format="json").status_code == 401


@pytest.mark.parametrize("resource", list(FACTORIES))
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_it_lets_viewers_read_but_not_write(
    resource: str, role: str, make_api_client: Callable[..., APIClient]
) -> None:
    api = make_api_client(role)
    row = FACTORIES[resource](enabled=True)
    url = f"/api/{resource}/{row.pk}/"

    assert api.get(f"/api/{resource}/").status_code == 200
    assert api.get(url).status_code == 200
    writes = [
        api.post(f"/api/{resource}/", payload(resource), format="json"),
        api.patch(url, {"enabled": False}, format="json"),
        api.delete(url),
        api.post(f"/api/{resource}/bulk/", {"action": "disable", "ids": [row.pk]}, format="json"),
    ]
    assert [r.status_code for r in writes] == [403] * 4
    assert writes[0].json()["error"]["code"] == "permission_denied"
    assert MODELS[resource].objects.get(pk=row.pk).enabled is True


@pytest.mark.parametrize("resource", list(FACTORIES))
def test_admins_create_update_and_delete(resource: str, admin_api: APIClient) -> None:
    created = admin_api.post(f"/api/{resource}/", payload(resource), format="json")
    assert created.status_code == 201, created.json()
    url = f"/api/{resource}/{created.json()['id']}/"

    patched = admin_api.patch(url, {"enabled": False}, format="json")
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False

    assert admin_api.delete(url).status_code == 204
    assert admin_api.get(url).status_code == 404
    assert not MODELS[resource].objects.exists()


# -- secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["workers", "writers", "uploaders"])
def test_it_never_returns_the_api_key(resource: str, admin_api: APIClient) -> None:
    created = admin_api.post(f"/api/{resource}/", payload(resource), format="json")
    pk = created.json()["id"]
    responses = [
        created,
        admin_api.get(f"/api/{resource}/"),
        admin_api.get(f"/api/{resource}/{pk}/"),
        admin_api.patch(f"/api/{resource}/{pk}/", {"name": "renomeado"}, format="json"),
        admin_api.post(
            f"/api/{resource}/bulk/",
            {"action": "update", "items": [{"id": pk, "api_key": KEY_CANARY}]},
            format="json",
        ),
        admin_api.post(
            f"/api/{resource}/bulk/", {"action": "create", "items": [{"name": 1}]}, format="json"
        ),
    ]
    for response in responses:
        assert KEY_CANARY not in response.content.decode()
    assert created.json()["has_api_key"] is True
    assert "api_key" not in created.json()
    assert MODELS[resource].objects.get(pk=pk).api_key == KEY_CANARY


def test_it_never_returns_the_proxy_password(admin_api: APIClient) -> None:
    created = admin_api.post("/api/proxies/", payload("proxies"), format="json")
    pk = created.json()["id"]
    bad = dict(payload("proxies", 1), port=0)
    responses = [
        created,
        admin_api.get("/api/proxies/"),
        admin_api.get(f"/api/proxies/{pk}/"),
        admin_api.patch(f"/api/proxies/{pk}/", {"port": 9000}, format="json"),
        admin_api.post("/api/proxies/", bad, format="json"),
        admin_api.post("/api/proxies/bulk/", {"action": "create", "items": [bad]}, format="json"),
    ]
    for response in responses:
        assert PASS_CANARY not in response.content.decode()
    body = created.json()
    assert "password" not in body
    assert body["has_password"] is True
    assert body["masked_url"] == "http://cliente:***@203.0.113.1:8000"
    assert body["country"] == "BR"
    assert Proxy.objects.get(pk=pk).password == PASS_CANARY


def test_it_keeps_the_password_when_an_update_leaves_it_out(admin_api: APIClient) -> None:
    proxy = factories.ProxyFactory.create(password=PASS_CANARY)

    # Not its address: a new address needs the password again (test_proxy_passwords.py).
    admin_api.patch(f"/api/proxies/{proxy.pk}/", {"max_sessions": 9}, format="json")

    proxy.refresh_from_db()
    assert (proxy.max_sessions, proxy.password) == (9, PASS_CANARY)


@pytest.mark.parametrize("resource", ["workers", "writers", "uploaders"])
def test_it_refuses_a_new_base_url_without_the_api_key(resource: str, admin_api: APIClient) -> None:
    row = FACTORIES[resource](api_key=KEY_CANARY)
    url = f"/api/{resource}/{row.pk}/"

    refused = admin_api.patch(url, {"base_url": "http://evil.example.com"}, format="json")
    accepted = admin_api.patch(
        url, {"base_url": "http://new.example.com", "api_key": "outra-chave"}, format="json"
    )

    assert refused.status_code == 400
    assert "api_key" in fields_of(refused)
    assert accepted.status_code == 200
    row.refresh_from_db()
    assert (row.base_url, row.api_key) == ("http://new.example.com", "outra-chave")


def test_it_allows_a_new_base_url_when_there_was_no_key(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(api_key="")

    response = admin_api.patch(
        f"/api/workers/{worker.pk}/", {"base_url": "http://other:9000"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["has_api_key"] is False


def test_an_empty_api_key_removes_it(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(api_key=KEY_CANARY)

    response = admin_api.patch(f"/api/workers/{worker.pk}/", {"api_key": ""}, format="json")

    assert response.json()["has_api_key"] is False


# -- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "satellite"}, "type"),
        ({"scheme": "ftp"}, "scheme"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "abc"}, "port"),
        ({"country": "B1"}, "country"),
        ({"country": "BRA"}, "country"),
        ({"host": "a b"}, "host"),
        ({"max_sessions": 0}, "max_sessions"),
    ],
)
def test_it_refuses_an_invalid_proxy(
    change: dict[str, Any], field: str, admin_api: APIClient
) -> None:
    response = admin_api.post("/api/proxies/", {**payload("proxies"), **change}, format="json")

    assert response.status_code == 400
    assert field in fields_of(response)
    assert not Proxy.objects.exists()


def test_it_refuses_a_duplicate_proxy_id(admin_api: APIClient) -> None:
    factories.ProxyFactory.create(external_id="px-new-0")

    response = admin_api.post("/api/proxies/", payload("proxies"), format="json")

    assert response.status_code == 400
    assert "external_id" in fields_of(response)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"base_url": "ftp://x.example.com"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"max_sessions": 0}, "max_sessions"),
        ({"providers": ["aws"]}, "providers"),
        ({"enabled": "talvez"}, "enabled"),
    ],
)
def test_it_refuses_an_invalid_worker(
    change: dict[str, Any], field: str, admin_api: APIClient
) -> None:
    response = admin_api.post("/api/workers/", {**payload("workers"), **change}, format="json")

    assert response.status_code == 400
    assert field in fields_of(response)


def test_it_answers_400_not_500_on_a_non_object_body(admin_api: APIClient) -> None:
    for body in ([1, 2], "texto", 5):
        response = admin_api.post(
            "/api/workers/", json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"
    malformed = admin_api.post("/api/workers/", "{", content_type="application/json")
    assert malformed.status_code == 400


def test_it_normalizes_site_config_fields(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/site-configs/",
        {
            "domain": "WWW.Loja.COM.br.",
            "proxy_types": ["residential", "mobile", "residential"],
            "countries": ["br", "Us"],
            "blocked_proxies": ["px-1", " px-2 "],
            "selectors": {"price": ".price", "title": "h1"},
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["domain"] == "loja.com.br"
    assert body["proxy_types"] == ["mobile", "residential"]
    assert body["countries"] == ["BR", "US"]
    assert body["blocked_proxies"] == ["px-1", "px-2"]


def test_it_accepts_the_default_site_config(admin_api: APIClient) -> None:
    response = admin_api.post("/api/site-configs/", {"domain": "*"}, format="json")

    assert response.status_code == 201
    assert response.json()["domain"] == "*"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"domain": "https://loja.com/"}, "domain"),
        ({"domain": "loja .com"}, "domain"),
        ({"domain": "www.existente.com"}, "domain"),
        ({"proxy_types": ["satellite"]}, "proxy_types"),
        ({"proxy_types": "residential"}, "proxy_types"),
        ({"countries": ["BRA"]}, "countries"),
        ({"countries": ["1X"]}, "countries"),
        ({"blocked_proxies": [{"id": 1}]}, "blocked_proxies"),
        ({"selectors": {"price": 5}}, "selectors"),
        ({"selectors": ["h1"]}, "selectors"),
        ({"engine": "curl"}, "engine"),
        ({"items_per_job": 0}, "items_per_job"),
    ],
)
def test_it_refuses_an_invalid_site_config(
    change: dict[str, Any], field: str, admin_api: APIClient
) -> None:
    factories.SiteConfigFactory.create(domain="existente.com")

    response = admin_api.post(
        "/api/site-configs/", {**payload("site-configs"), **change}, format="json"
    )

    assert response.status_code == 400
    assert field in fields_of(response)
    assert SiteConfig.objects.count() == 1


# -- writers and deletes ------------------------------------------------------------


def test_setting_a_default_writer_unsets_the_others(admin_api: APIClient) -> None:
    old = factories.WriterFactory.create(is_default=True)
    new = factories.WriterFactory.create()

    response = admin_api.patch(f"/api/writers/{new.pk}/", {"is_default": True}, format="json")
    created = admin_api.post(
        "/api/writers/", {**payload("writers"), "is_default": True}, format="json"
    )

    assert response.status_code == 200
    assert created.status_code == 201
    assert list(Writer.objects.filter(is_default=True).values_list("pk", flat=True)) == [
        created.json()["id"]
    ]
    old.refresh_from_db()
    assert old.is_default is False


def test_it_answers_409_when_deleting_a_worker_with_sessions(admin_api: APIClient) -> None:
    session = factories.BrowserSessionFactory.create()

    response = admin_api.delete(f"/api/workers/{session.worker_id}/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert Worker.objects.filter(pk=session.worker_id).exists()


def test_it_answers_404_for_an_unknown_row(admin_api: APIClient) -> None:
    response = admin_api.get("/api/proxies/999999/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# -- lists --------------------------------------------------------------------------


def test_lists_are_paginated(viewer_api: APIClient) -> None:
    for _ in range(3):
        factories.ProxyFactory.create()

    first = viewer_api.get("/api/proxies/?page_size=2").json()
    second = viewer_api.get("/api/proxies/?page_size=2&page=2").json()

    assert first["count"] == 3
    assert len(first["results"]) == 2
    assert first["next"] is not None
    assert len(second["results"]) == 1
    assert second["next"] is None
    assert viewer_api.get("/api/proxies/?page=9").status_code == 404


def test_proxies_filter_by_type_and_country_in_any_case(viewer_api: APIClient) -> None:
    wanted = factories.ProxyFactory.create(type="residential", country="BR")
    factories.ProxyFactory.create(type="residential", country="US")
    factories.ProxyFactory.create(type="datacenter", country="BR")

    response = viewer_api.get("/api/proxies/?type=residential&country=br")

    assert [r["id"] for r in response.json()["results"]] == [wanted.pk]


def test_workers_filter_search_and_order(viewer_api: APIClient) -> None:
    factories.WorkerFactory.create(name="bravo", health_status="ok")
    factories.WorkerFactory.create(name="alfa", health_status="offline")
    factories.WorkerFactory.create(name="charlie", health_status="ok", enabled=False)

    by_health = viewer_api.get("/api/workers/?health_status=ok&ordering=-name").json()
    by_enabled = viewer_api.get("/api/workers/?enabled=false").json()
    searched = viewer_api.get("/api/workers/?search=alf").json()

    assert [r["name"] for r in by_health["results"]] == ["charlie", "bravo"]
    assert [r["name"] for r in by_enabled["results"]] == ["charlie"]
    assert [r["name"] for r in searched["results"]] == ["alfa"]


def test_it_refuses_an_invalid_filter_value(viewer_api: APIClient) -> None:
    response = viewer_api.get("/api/proxies/?type=satellite")

    assert response.status_code == 400
    assert "type" in fields_of(response)


@pytest.mark.parametrize("resource", list(FACTORIES))
def test_list_query_count_does_not_grow_with_rows(resource: str, viewer_api: APIClient) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = viewer_api.get(f"/api/{resource}/?page_size=100")
        assert response.status_code == 200
        return len(ctx.captured_queries)

    for _ in range(3):
        FACTORIES[resource]()
    few = count_queries()
    for _ in range(27):
        FACTORIES[resource]()
    many = count_queries()

    assert MODELS[resource].objects.count() == 30
    assert few == many


# -- bulk ---------------------------------------------------------------------------


def test_bulk_create_writes_every_item(admin_api: APIClient) -> None:
    items = [payload("proxies", n) for n in range(3)]

    response = admin_api.post(
        "/api/proxies/bulk/", {"action": "create", "items": items}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["action"] == "create"
    assert body["count"] == 3
    assert sorted(body["ids"]) == sorted(Proxy.objects.values_list("pk", flat=True))


def test_bulk_create_writes_nothing_when_one_item_is_invalid(admin_api: APIClient) -> None:
    items = [payload("proxies", n) for n in range(5)]
    items[3]["port"] = 70000
    items[4]["type"] = "satellite"

    response = admin_api.post(
        "/api/proxies/bulk/", {"action": "create", "items": items}, format="json"
    )

    assert response.status_code == 400
    errors = fields_of(response)["items"]
    assert set(errors) == {"3", "4"}
    assert "port" in errors["3"]
    assert "type" in errors["4"]
    assert not Proxy.objects.exists()


def test_bulk_create_refuses_duplicates_inside_the_batch(admin_api: APIClient) -> None:
    items = [payload("site-configs", 1), {**payload("site-configs", 2), "domain": "loja1.com.br"}]

    response = admin_api.post(
        "/api/site-configs/bulk/", {"action": "create", "items": items}, format="json"
    )

    assert response.status_code == 400
    assert "domain" in fields_of(response)["items"]["1"]
    assert not SiteConfig.objects.exists()


def test_bulk_update_reports_unknown_ids_by_index(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(max_sessions=2)

    response = admin_api.post(
        "/api/workers/bulk/",
        {
            "action": "update",
            "items": [{"id": worker.pk, "max_sessions": 9}, {"id": 987654, "max_sessions": 3}],
        },
        format="json",
    )

    assert response.status_code == 400
    assert set(fields_of(response)["items"]) == {"1"}
    assert "id" in fields_of(response)["items"]["1"]
    worker.refresh_from_db()
    assert worker.max_sessions == 2


def test_bulk_update_applies_partial_changes(admin_api: APIClient) -> None:
    a, b = factories.WorkerFactory.create(), factories.WorkerFactory.create()

    response = admin_api.post(
        "/api/workers/bulk/",
        {
            "action": "update",
            "items": [{"id": a.pk, "draining": True}, {"id": b.pk, "max_sessions": 3}],
        },
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["count"] == 2
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.draining, b.max_sessions) == (True, 3)


def test_bulk_update_requires_the_key_with_a_new_base_url(admin_api: APIClient) -> None:
    writer = factories.WriterFactory.create(api_key=KEY_CANARY)

    response = admin_api.post(
        "/api/writers/bulk/",
        {"action": "update", "items": [{"id": writer.pk, "base_url": "http://outro:1"}]},
        format="json",
    )

    assert response.status_code == 400
    assert "api_key" in fields_of(response)["items"]["0"]


def test_bulk_refuses_two_default_writers(admin_api: APIClient) -> None:
    items = [{**payload("writers", n), "is_default": True} for n in range(2)]

    response = admin_api.post(
        "/api/writers/bulk/", {"action": "create", "items": items}, format="json"
    )

    assert response.status_code == 400
    assert "is_default" in fields_of(response)["items"]["1"]


@pytest.mark.parametrize(("action", "enabled"), [("enable", True), ("disable", False)])
def test_bulk_enable_and_disable(action: str, enabled: bool, admin_api: APIClient) -> None:
    rows = [factories.ProxyFactory.create(enabled=not enabled) for _ in range(3)]
    other = factories.ProxyFactory.create(enabled=not enabled)

    response = admin_api.post(
        "/api/proxies/bulk/", {"action": action, "ids": [r.pk for r in rows]}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["count"] == 3
    assert Proxy.objects.filter(enabled=enabled).count() == 3
    other.refresh_from_db()
    assert other.enabled is not enabled


def test_bulk_delete_reports_unknown_ids_and_deletes_nothing(admin_api: APIClient) -> None:
    row = factories.UploaderFactory.create()

    response = admin_api.post(
        "/api/uploaders/bulk/", {"action": "delete", "ids": [row.pk, 424242]}, format="json"
    )

    assert response.status_code == 400
    assert set(fields_of(response)["ids"]) == {"1"}
    assert Uploader.objects.filter(pk=row.pk).exists()


def test_bulk_delete_of_a_worker_in_use_answers_409_and_deletes_nothing(
    admin_api: APIClient,
) -> None:
    free = factories.WorkerFactory.create()
    session = factories.BrowserSessionFactory.create()

    response = admin_api.post(
        "/api/workers/bulk/",
        {"action": "delete", "ids": [free.pk, session.worker_id]},
        format="json",
    )

    assert response.status_code == 409
    assert set(fields_of(response)["ids"]) == {"1"}
    assert Worker.objects.count() == 2


def test_bulk_delete_removes_every_row(admin_api: APIClient) -> None:
    rows = [factories.SiteConfigFactory.create(domain=f"s{n}.com") for n in range(3)]

    response = admin_api.post(
        "/api/site-configs/bulk/", {"action": "delete", "ids": [r.pk for r in rows]}, format="json"
    )

    assert response.status_code == 200
    assert not SiteConfig.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "explode", "ids": [1]}, "action"),
        ({"action": "create"}, "items"),
        ({"action": "delete", "items": [{}]}, "ids"),
        ({"action": "delete", "ids": ["x"]}, "ids"),
        ({"action": "create", "items": [1, 2]}, "items"),
        ({"action": "enable", "ids": []}, "ids"),
        ({"action": "enable", "ids": list(range(1, 1002))}, "ids"),
        ({"action": "create", "items": [{}] * 1001}, "items"),
    ],
)
def test_bulk_refuses_a_malformed_request(
    body: dict[str, Any], field: str, admin_api: APIClient
) -> None:
    response = admin_api.post("/api/workers/bulk/", body, format="json")

    assert response.status_code == 400
    assert field in fields_of(response)


# -- import -------------------------------------------------------------------------


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def upload(admin_api: APIClient, entries: Any, query: str = "") -> Any:
    """A proxies.json file upload: every spelling of the file format (a JSON body is
    held to the API's entry schema)."""
    body = SimpleUploadedFile("proxies.json", json.dumps(entries).encode())
    return admin_api.post(f"/api/proxies/import/{query}", {"file": body}, format="multipart")


def test_it_imports_every_variant_of_the_example_proxies(admin_api: APIClient) -> None:
    response = upload(admin_api, example("proxies.json"))

    assert response.status_code == 200, response.json()
    assert response.json() == {"created": 5, "updated": 0, "skipped": 0, "errors": {}}
    rows = {p.external_id: p for p in Proxy.objects.all()}
    assert rows["px-br-res-02"].country == "BR"
    assert rows["px-us-dc-01"].scheme == "http"
    assert (rows["px-us-dc-01"].host, rows["px-us-dc-01"].port) == ("198.51.100.7", 3128)
    dc2 = rows["px-us-dc-02"]
    assert (dc2.scheme, dc2.username, dc2.password, dc2.port) == ("socks5", "user", "pass", 1080)
    assert (dc2.country, dc2.max_sessions) == ("US", 4)
    assert rows["px-mx-mob-01"].enabled is False
    assert rows["px-br-res-01"].provider == "provedor-a"
    assert "troque-me" not in response.content.decode()


def test_a_second_import_updates_and_keeps_runtime_state(admin_api: APIClient) -> None:
    upload(admin_api, example("proxies.json"))
    Proxy.objects.filter(external_id="px-br-res-01").update(status="banned", failure_count=7)
    changed = example("proxies.json")
    changed[0]["port"] = 9001

    response = upload(admin_api, changed)

    assert response.json()["updated"] == 5
    proxy = Proxy.objects.get(external_id="px-br-res-01")
    assert (proxy.port, proxy.status, proxy.failure_count) == (9001, "banned", 7)


def test_it_imports_nothing_and_names_bad_entries_by_index(admin_api: APIClient) -> None:
    entries = example("proxies.json")
    entries[1]["port"] = 70000
    entries.append({"id": "px-x", "type": "residential", "server": "ftp://h:1"})

    response = upload(admin_api, entries)

    assert response.status_code == 400
    errors = fields_of(response)["entries"]
    assert set(errors) == {"1", "5"}
    assert "port" in errors["1"]
    assert "server" in errors["5"]
    assert not Proxy.objects.exists()


def test_skip_invalid_imports_the_good_entries(admin_api: APIClient) -> None:
    entries = [*example("proxies.json"), {"id": "px-bad", "type": "residential"}]

    response = upload(admin_api, entries, "?skip_invalid=true")

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["skipped"]) == (5, 1)
    assert set(body["errors"]) == {"5"}


GOOD = {"id": "px-a", "type": "residential", "host": "203.0.113.9", "port": 8000}


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "id": "px-b", "geo": "BR"},  # a file's spelling, not the body's schema
        {"_id": "px-b", "type": "residential", "host": "203.0.113.9", "port": 8000},
        {**GOOD, "id": "x" * 101},  # past the schema's maxLength
        {**GOOD, "id": "px-b", "port": 0},
        {**GOOD, "id": "px-b", "port": "8000"},  # a file may spell numbers as text
        {**GOOD, "id": "px-b", "enabled": "true"},
        {**GOOD, "id": "px-b", "maxSessions": True},
        {**GOOD, "id": "px-b", "provider": None},
        {**GOOD, "id": "px-b", "country": "BRA"},
        {**GOOD, "id": "px-b", "scheme": "ftp"},
        {**GOOD, "id": "px-b", "port": 8000.0},
        {"id": "px-b", "type": "residential", "host": "203.0.113.9"},  # no port
    ],
)
def test_a_json_body_entry_outside_the_schema_is_refused_even_with_skip_invalid(
    admin_api: APIClient, bad: dict[str, Any]
) -> None:
    response = admin_api.post("/api/proxies/import/?skip_invalid=true", [GOOD, bad], format="json")

    assert response.status_code == 400, response.json()
    assert set(fields_of(response)["entries"]) == {"1"}
    assert not Proxy.objects.exists()


def test_a_json_body_refusal_names_the_rule_and_never_echoes_the_value(
    admin_api: APIClient,
) -> None:
    secret = "segredo-" + "s" * 250
    bad = {**GOOD, "password": secret, "country": "BRA", "port": "8000", "extra": 1}

    response = admin_api.post("/api/proxies/import/", [bad], format="json")

    assert response.status_code == 400
    assert fields_of(response)["entries"]["0"] == {
        "extra": "is not a field of an entry.",
        "password": "breaks the schema's maxLength (255).",
        "country": "breaks the schema's pattern (^[A-Za-z]{2}$).",
        "port": "must be a JSON integer.",
    }
    assert "segredo" not in response.content.decode()


def test_skip_invalid_skips_a_repeated_id_of_a_json_body(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/proxies/import/?skip_invalid=true", [GOOD, {**GOOD, "port": 8001}], format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["skipped"] == 1
    assert Proxy.objects.get().port == 8000


def test_it_refuses_a_proxies_file_that_is_not_a_list(admin_api: APIClient) -> None:
    response = admin_api.post("/api/proxies/import/", {"id": "x"}, format="json")

    assert response.status_code == 400
    assert "entries" in fields_of(response)


CSV = (
    "id,type,host,port,username,password,country,provider,max_sessions,enabled\n"
    f"px-csv-1,residential,203.0.113.50,8000,cli,{PASS_CANARY},br,prov,3,true\n"
    "px-csv-2,datacenter,203.0.113.51,3128,,,US,,,false\n"
)


def test_it_imports_a_csv_body(admin_api: APIClient) -> None:
    response = admin_api.post("/api/proxies/import/", CSV, content_type="text/csv")

    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 2
    first = Proxy.objects.get(external_id="px-csv-1")
    assert (first.country, first.max_sessions, first.password) == ("BR", 3, PASS_CANARY)
    assert Proxy.objects.get(external_id="px-csv-2").enabled is False
    assert PASS_CANARY not in response.content.decode()


def test_it_imports_an_uploaded_csv_or_json_file(admin_api: APIClient) -> None:
    csv_file = SimpleUploadedFile("proxies.csv", CSV.encode(), content_type="text/csv")
    json_file = SimpleUploadedFile(
        "proxies.json", (EXAMPLES / "proxies.json").read_bytes(), content_type="application/json"
    )

    first = admin_api.post("/api/proxies/import/", {"file": csv_file}, format="multipart")
    second = admin_api.post("/api/proxies/import/", {"file": json_file}, format="multipart")

    assert first.status_code == 200, first.json()
    assert second.status_code == 200, second.json()
    assert Proxy.objects.count() == 7


def test_it_reports_bad_csv_rows_by_index(admin_api: APIClient) -> None:
    bad = CSV + "px-csv-3,residential,203.0.113.52,abc,,,BR,,,\n"

    response = admin_api.post("/api/proxies/import/", bad, content_type="text/csv")

    assert response.status_code == 400
    assert fields_of(response)["entries"] == {"2": {"port": "must be an integer."}}


def test_it_imports_the_example_strategies(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/site-configs/import/", example("proxy-strategies.json"), format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 3
    default = SiteConfig.objects.get(domain="*")
    assert (default.proxy_types, default.countries, default.max_sessions) == (
        ["datacenter", "residential"],
        [],
        4,
    )
    loja = SiteConfig.objects.get(domain="loja-exemplo.com.br")
    assert loja.countries == ["BR"]
    assert loja.blocked_proxies == ["px-br-res-02"]
    assert (loja.max_sessions, loja.items_per_job) == (2, 25)
    assert SiteConfig.objects.get(domain="example.com").countries == ["CA", "US"]


def test_it_upserts_strategies_by_normalized_domain(admin_api: APIClient) -> None:
    factories.SiteConfigFactory.create(
        domain="loja-exemplo.com.br", items_per_job=7, job_timeout_s=99
    )

    response = admin_api.post(
        "/api/site-configs/import/", example("proxy-strategies.json"), format="json"
    )

    assert response.json()["updated"] == 1
    loja = SiteConfig.objects.get(domain="loja-exemplo.com.br")
    assert (loja.items_per_job, loja.job_timeout_s) == (25, 99)


def test_it_names_bad_strategies_and_imports_nothing(admin_api: APIClient) -> None:
    data = example("proxy-strategies.json")
    data["domains"]["bad.com"] = {"proxyTypes": ["satellite"], "geo": "BRA", "maxSessions": 0}

    response = admin_api.post("/api/site-configs/import/", data, format="json")

    assert response.status_code == 400
    assert set(fields_of(response)["entries"]["3"]) == {"proxyTypes", "geo", "maxSessions"}
    assert not SiteConfig.objects.exists()


def test_viewers_cannot_import(viewer_api: APIClient) -> None:
    response = viewer_api.post("/api/proxies/import/", example("proxies.json"), format="json")

    assert response.status_code == 403
    assert not Proxy.objects.exists()


def test_bulk_update_does_not_take_true_for_an_id(admin_api: APIClient) -> None:
    worker = factories.WorkerFactory.create(max_sessions=2)

    response = admin_api.post(
        "/api/workers/bulk/",
        {"action": "update", "items": [{"id": True, "max_sessions": 9}]},
        format="json",
    )

    assert response.status_code == 400
    assert "id" in fields_of(response)["items"]["0"]
    worker.refresh_from_db()
    assert worker.max_sessions == 2


@pytest.mark.parametrize(
    ("upload", "field"),
    [
        (SimpleUploadedFile("p.json", b'{"default": {}}'), "entries"),
        (SimpleUploadedFile("p.json", b"[{"), "file"),
        (SimpleUploadedFile("p.csv", b"\xff\xfe\x00"), "file"),
        (None, "file"),
    ],
)
def test_it_refuses_a_bad_upload_with_400(
    upload: SimpleUploadedFile | None, field: str, admin_api: APIClient
) -> None:
    data = {"file": upload} if upload else {"other": "x"}

    response = admin_api.post("/api/proxies/import/", data, format="multipart")

    assert response.status_code == 400
    assert field in fields_of(response)
