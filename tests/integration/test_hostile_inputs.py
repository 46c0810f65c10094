"""A corpus of hostile inputs across every endpoint family (API, built-in worker and
writer, dashboard): each answers a 4xx — in the one error shape under /api/ and
/local/ — never a 500, and none writes a row. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db

HUGE = "9" * 40


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"
    extra: dict[str, str] = field(default_factory=dict)

    # Harmless input the endpoint ignores (an unknown ordering, a replaced invalid
    # percent-escape): any answer below 500 that writes nothing is right.
    tolerated: bool = False

    def __str__(self) -> str:
        return self.name


def _nest(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# JSON bodies every JSON endpoint must refuse with a 4xx.
HOSTILE_BODIES: dict[str, bytes] = {
    "deep-object": _nest(5000),
    "deep-array": b"[" * 100_000 + b"]" * 100_000,
    "nesting-over-limit": _nest(40),
    "nul-in-value": b'{"name":"a\\u0000b","url":"http://x\\u0000/","urls":["\\u0000"]}',
    "nul-in-key": b'{"na\\u0000me":"x"}',
    "lone-surrogate": b'{"name":"\\ud800","domain":"\\udfff.com","urls":["http://\\ud800.com/"]}',
    "huge-int": b'{"priority":' + HUGE.encode() + b',"port":' + HUGE.encode() + b',"value":1e999}',
    "nan-literal": b'{"priority":NaN,"value":Infinity}',
    "wrong-types": b'{"name":[],"urls":{"a":1},"priority":"x","events":7,"enabled":"maybe"}',
    "array-not-object": b"[1,2,3]",
    "invalid-utf8": b'{"name":"\xff\xfe\xfa"}',
    "not-json": b"{'name': 'x'",
}

IMPORT_SKIPPED = {"wrong-types", "nul-in-value", "nul-in-key", "lone-surrogate", "huge-int"}
POST_PATHS = [
    "/api/missions/",
    "/api/missions/bulk/",
    "/api/proxies/",
    "/api/proxies/bulk/",
    "/api/proxies/import/",
    "/api/site-configs/",
    "/api/site-configs/bulk/",
    "/api/site-configs/import/",
    "/api/workers/",
    "/api/workers/bulk/",
    "/api/writers/",
    "/api/uploaders/",
    "/api/webhooks/",
    "/api/recurring-missions/",
    "/api/allocation/dry-run/",
    "/api/auth/token/",
    "/local/worker/api/v1/sessions",
    "/local/writer/api/v1/batches",
]
PATCH_PATHS = [
    "/api/proxies/{proxy}/",
    "/api/workers/{worker}/",
    "/api/site-configs/{site}/",
    "/api/config/http_deadline_s/",
]
CONFIG = "/api/config/http_deadline_s/"
CURSOR_LISTS = [
    "/api/missions/",
    "/api/missions/{mission}/items/",
    "/api/missions/{mission}/events/",
    "/api/sessions/",
    "/api/webhook-deliveries/",
]
CURSORS = {
    "p-abc": base64.b64encode(b"p=abc").decode(),
    "p-huge": base64.b64encode(b"p=" + HUGE.encode()).decode(),
    "p-nul": base64.b64encode(b"p=1\x00").decode(),
    "o-garbage": base64.b64encode(b"o=x&r=zz").decode(),
    "empty": "%%%",  # decodes to an empty cursor: the first page
}
QUERY_PROBES = {
    "q-nul": "search=%00",
    "id-huge": f"id={HUGE}",
    "priority-huge": f"priority={HUGE}",
    "page-text": "page=abc",
    "page-size-huge": f"page_size={HUGE}",
    "ordering-bogus": "ordering=__class__",
    "surrogate": "search=%ED%A0%80",
}
IGNORED = {"ordering-bogus", "surrogate", "page-text", "id-huge", "priority-huge", "page-size-huge"}
QUERY_LISTS = ["/api/missions/", "/api/proxies/", "/api/workers/", "/api/site-configs/"]


# Per path, the fields a hostile value goes into (fields the endpoint reads).
FIELDS = {
    "/api/proxies/{proxy}/": ("host", "username", "port"),
    "/api/workers/{worker}/": ("name", "base_url", "max_sessions"),
    "/api/site-configs/{site}/": ("domain", "engine", "max_sessions"),
}
# A value each kind puts into those fields (a string, a string, a number).
TARGETED = {
    "nul-in-value": ('"a\\u0000b"', '"a\\u0000b"', "1"),
    "lone-surrogate": ('"\\ud800"', '"\\udfff"', "1"),
    "huge-int": ("1", "1", HUGE),
}


def _targeted(path: str, kind: str, body: bytes) -> bytes:
    if kind not in TARGETED or path not in FIELDS:
        return body
    pairs = [f'"{f}":{v}' for f, v in zip(FIELDS[path], TARGETED[kind], strict=True)]
    return ("{" + ",".join(pairs) + "}").encode()


def _cases() -> list[Case]:
    cases: list[Case] = []
    for path in POST_PATHS:
        for kind, body in HOSTILE_BODIES.items():
            # A strategies file maps domain -> entry: keys that are not entries of the
            # file's shape are skipped (nothing written, 200 with zero rows).
            tolerated = path == "/api/site-configs/import/" and kind in IMPORT_SKIPPED
            cases.append(Case(f"POST {path} {kind}", "POST", path, body, tolerated=tolerated))
    for path in PATCH_PATHS:
        for kind, body in HOSTILE_BODIES.items():
            # An unknown key is ignored, whatever it holds: harmless.
            cases.append(
                Case(
                    f"PATCH {path} {kind}",
                    "PATCH",
                    path,
                    _targeted(path, kind, body),
                    tolerated=kind == "nul-in-key",
                )
            )
    for path in CURSOR_LISTS:
        for kind, cursor in CURSORS.items():
            url = f"{path}?cursor={cursor}"
            cases.append(Case(f"GET {path} cursor {kind}", "GET", url, tolerated=kind == "empty"))
    for path in QUERY_LISTS:
        for kind, query in QUERY_PROBES.items():
            url = f"{path}?{query}"
            cases.append(Case(f"GET {path} {kind}", "GET", url, tolerated=kind in IGNORED))
    cases += [
        Case("config value NUL", "PATCH", CONFIG, b'{"value":"1\\u0000"}'),
        Case("config value surrogate", "PATCH", CONFIG, b'{"value":"\\ud800"}'),
        Case("config value huge", "PATCH", CONFIG, b'{"value":' + HUGE.encode() + b"}"),
        Case("config value NaN", "PATCH", CONFIG, b'{"value":NaN}'),
        Case("resume domain NUL", "POST", "/api/execution/domains/%00/resume/", b"{}"),
        Case("mission id NUL", "GET", "/api/missions/%00/"),
        Case("mission id huge", "GET", f"/api/missions/{HUGE}/"),
        Case("proxy id text", "GET", "/api/proxies/0.5/"),
        Case("unknown api path", "GET", "/api/nothing-here/"),
        Case("wrong method", "DELETE", "/api/missions/"),
        Case("local job NUL", "GET", "/local/worker/api/v1/jobs/%00"),
        Case("local batch huge", "GET", f"/local/writer/api/v1/batches/{HUGE}"),
        Case(
            "oversized body api",
            "POST",
            "/api/missions/",
            b"{}",
            extra={"CONTENT_LENGTH": str(200 * 1024 * 1024)},
        ),
        Case(
            "oversized body local",
            "POST",
            "/local/writer/api/v1/batches",
            b"{}",
            extra={"CONTENT_LENGTH": str(200 * 1024 * 1024)},
        ),
        Case(
            "bad content-length",
            "POST",
            "/api/missions/",
            b"{}",
            extra={"CONTENT_LENGTH": "abc"},
        ),
        Case(
            "csv NUL",
            "POST",
            "/api/proxies/import/",
            b"id,type,host,port\np1,datacenter,ex\x00ample.com,80\n",
            "text/csv",
        ),
        Case(
            "csv field over limit",
            "POST",
            "/api/proxies/import/",
            b'id,type,host,port\np1,datacenter,"' + b"a" * 200_000 + b'",80\n',
            "text/csv",
        ),
        Case(
            "csv invalid utf8",
            "POST",
            "/api/proxies/import/",
            b"id,type,host,port\np1,datacenter,\xff\xfe,80\n",
            "text/csv",
        ),
        Case("csv surrogate escape", "POST", "/api/proxies/import/", b'[{"id":"\\ud800"}]'),
        Case("unsupported media type", "POST", "/api/missions/", b"<x/>", "application/xml"),
        Case("dashboard search NUL", "GET", "/missions/?q=%00"),
        Case("dashboard query huge", "GET", f"/missions/?page={HUGE}"),
    ]
    return cases


CASES = _cases()
_WATCHED_APPS = ("registry", "orchestrator", "localnode")


def _row_counts() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for app in _WATCHED_APPS
        for model in apps.get_app_config(app).get_models()
    }


@pytest.fixture
def ids() -> dict[str, int]:
    mission = factories.MissionFactory()
    return {
        "proxy": factories.ProxyFactory().pk,
        "worker": factories.WorkerFactory().pk,
        "site": factories.SiteConfigFactory().pk,
        "mission": mission.pk,
    }


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_is_a_clear_4xx_and_writes_nothing(
    case: Case,
    ids: dict[str, int],
    admin_api: APIClient,
    settings: Any,
) -> None:
    settings.LOCALNODE_API_KEY = ""
    path = case.path.format(**ids)
    before = _row_counts()
    client: APIClient | Client = admin_api
    if not path.startswith(("/api/", "/local/")):
        client = Client()
        client.force_login(admin_api.user)  # type: ignore[attr-defined]
    send: Callable[..., Any] = client.generic
    response = send(case.method, path, case.body, content_type=case.content_type, **case.extra)
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if not case.tolerated:
        assert response.status_code >= 400, (response.status_code, response.content[:300])
    if path.startswith(("/api/", "/local/")) and response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), response.content[:200]
        error = response.json()["error"]
        assert error["code"] and error["message"]
    assert _row_counts() == before
