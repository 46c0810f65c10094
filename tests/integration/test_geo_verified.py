"""Verified geo: the proxy connection test (through a real forward proxy on loopback)
records the exit IP/country, flags a mismatch, and strategies can insist on it."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator import actions, events
from orchestrator.managers.missions import MissionManager
from orchestrator.models import Mission
from orchestrator.states import MissionStatus
from registry import connection, geo
from registry.models import Proxy
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_leftover_wakeups() -> Iterator[None]:
    # Events published inside a test's rolled-back transaction leave NOTIFY wake-ups
    # queued on the thread; drop them so later transactional tests see only their own.
    yield
    events._pending.wake.clear()


class Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.answer = b"{}"  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class GeoHandler(BaseHTTPRequestHandler):
    """A geo-aware check URL: answers what the test tells it to."""

    def do_GET(self) -> None:
        body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ForwardProxy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=5)
        upstream.request("GET", target.path or "/")
        reply = upstream.getresponse()
        body = reply.read()
        self.send_response(reply.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def geo_service() -> Iterator[Server]:
    server = Server(GeoHandler)
    yield server
    server.close()


@pytest.fixture
def forward_proxy() -> Iterator[Server]:
    server = Server(ForwardProxy)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _check_url(geo_service: Server, settings: Any) -> Iterator[None]:
    settings.PROXY_CHECK_URL = f"http://127.0.0.1:{geo_service.port}/json"
    cache.clear()
    yield
    cache.clear()


def loopback_proxy(port: int, country: str = "BR") -> Proxy:
    return factories.ProxyFactory(
        host="127.0.0.1", port=port, username="", password="", country=country
    )


def test_the_connection_test_records_exit_ip_and_country(
    geo_service: Server, forward_proxy: Server, admin_api: APIClient
) -> None:
    geo_service.httpd.answer = b'{"ip": "203.0.113.7", "country": "BR", "city": "X"}'  # type: ignore[attr-defined]
    proxy = loopback_proxy(forward_proxy.port)

    response = admin_api.post(f"/api/proxies/{proxy.pk}/test-connection/")

    assert response.json()["ok"] is True
    proxy.refresh_from_db()
    assert (proxy.exit_ip, proxy.exit_country, proxy.geo_mismatch) == ("203.0.113.7", "BR", False)
    assert proxy.geo_verified
    body = admin_api.get(f"/api/proxies/{proxy.pk}/").json()
    assert (body["exit_country"], body["geo_verified"], body["geo_mismatch"]) == ("BR", True, False)


def test_a_different_exit_country_is_flagged(geo_service: Server, forward_proxy: Server) -> None:
    geo_service.httpd.answer = b'{"query": "198.51.100.4", "countryCode": "US"}'  # type: ignore[attr-defined]
    proxy = loopback_proxy(forward_proxy.port, country="BR")

    connection.check_proxy(proxy)

    proxy.refresh_from_db()
    assert (proxy.exit_country, proxy.geo_mismatch, proxy.geo_verified) == ("US", True, False)


def test_an_ip_only_answer_records_the_ip_but_verifies_nothing(
    geo_service: Server, forward_proxy: Server
) -> None:
    geo_service.httpd.answer = b'{"origin": "192.0.2.1, 10.0.0.1"}'  # type: ignore[attr-defined]
    proxy = loopback_proxy(forward_proxy.port)

    connection.check_proxy(proxy)

    proxy.refresh_from_db()
    assert (proxy.exit_ip, proxy.exit_country, proxy.geo_verified) == ("192.0.2.1", "", False)
    assert geo.parse(b"fl=1\nip=192.0.2.9\nloc=de\n") == geo.ExitInfo("192.0.2.9", "DE")


def test_a_strategy_that_insists_gets_only_verified_proxies(viewer_api: APIClient) -> None:
    factories.WriterFactory(is_default=True)
    factories.WorkerFactory()
    factories.SiteConfigFactory(
        domain="example.com", proxy_types=["residential"], countries=["BR"], max_sessions=4
    )
    from registry.models import SiteConfig

    SiteConfig.objects.filter(domain="example.com").update(require_verified_geo=True)
    now = timezone.now()
    unverified = factories.ProxyFactory(type="residential", country="BR")
    wrong = factories.ProxyFactory(
        type="residential", country="BR", exit_country="US", geo_checked_at=now, geo_mismatch=True
    )
    mission = actions.create_mission(name="Geo", urls=["https://example.com/1"])

    MissionManager("t").tick()
    mission.refresh_from_db()
    assert mission.status == MissionStatus.QUEUED
    summary = viewer_api.get(f"/api/missions/{mission.pk}/explain/").json()["summary"]
    assert "2 sem geo verificado (a estratégia exige)" in summary

    verified = factories.ProxyFactory(
        type="residential", country="BR", exit_country="BR", geo_checked_at=now
    )
    MissionManager("t").tick()
    mission = Mission.objects.get(pk=mission.pk)
    assert mission.status == MissionStatus.ATRIBUIDO
    used = set(mission.sessions.values_list("proxy_id", flat=True))
    assert used == {verified.pk}
    assert unverified.pk not in used and wrong.pk not in used
