"""Issue #18 point 7, measured: django-axes locks an address that sprays usernames (not
only username+address pairs); TRUSTED_PROXY_COUNT decides the client address for axes,
the throttles and the audit log alike; the API's login throttle holds across two real
gunicorn processes sharing one cache (the database cache), where a per-process memory
cache gives each process its own budget."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditLog
from registry import tokens
from tests import factories

PASSWORD = "senha-forte-123"
ROOT = Path(__file__).resolve().parents[2]
SPRAYED = 64


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _spray(client: Client, n: int) -> list[int]:
    return [
        client.post("/login/", {"username": f"user{i:02d}", "password": "errada"}).status_code
        for i in range(n)
    ]


@pytest.mark.django_db
def test_spraying_64_usernames_from_one_address_gets_it_blocked(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 10
    factories.UserFactory(username="ana", role="viewer")
    sprayer = Client(REMOTE_ADDR="203.0.113.7")

    codes = _spray(sprayer, SPRAYED)

    # Every username was tried once: only the per-address rule can stop this.
    assert codes[:9] == [200] * 9
    assert codes[10:] == [429] * (SPRAYED - 10)
    assert sprayer.post("/login/", {"username": "ana", "password": PASSWORD}).status_code == 429
    # The real user from another address is not locked out.
    other = Client(REMOTE_ADDR="198.51.100.20")
    assert other.post("/login/", {"username": "ana", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_is_locked_and_audited_apart(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 10
    settings.TRUSTED_PROXY_COUNT = 1
    factories.UserFactory(username="ana", role="admin")
    proxy = "10.0.0.5"  # every request reaches us from the TLS proxy's address
    sprayer = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7")
    neighbour = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.20")

    codes = _spray(sprayer, 12)

    assert codes[-1] == 429
    # Locked: the sprayer's address, not the proxy's (nor the forged left-most entry).
    assert neighbour.post("/login/", {"username": "ana", "password": PASSWORD}).status_code == 302
    key = tokens.issue(factories.UserFactory(username="bia", role="admin"))[1]
    api = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.44")
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    created = api.post("/api/site-configs/", {"domain": "audit-ip.example"}, format="json").json()
    entry = AuditLog.objects.filter(object_id=str(created["id"])).latest("id")
    assert entry.ip == "192.0.2.44"


@pytest.mark.django_db
def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 10
    settings.TRUSTED_PROXY_COUNT = 0
    factories.UserFactory(username="ana", role="viewer")
    forged = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.99")

    assert _spray(forged, 11)[-1] == 429
    # A new forged header does not escape the lock on the real address.
    again = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.100")
    assert again.post("/login/", {"username": "ana", "password": PASSWORD}).status_code == 429


# --- two real gunicorn processes ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, cache_url: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "mission_control.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LOCALNODE_API_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "AXES_FAILURE_LIMIT": "1000",  # the throttle alone is measured here
        "LOGIN_RATE": "10/hour",  # one window for the whole run, however slow the machine
    }
    if cache_url:
        env["CACHE_URL"] = cache_url
    return env


def _post(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/auth/token/",
        data=b'{"username": "nobody", "password": "errada"}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "gunicorn exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not start")


def allowed_over_two_gunicorns(tmp_path: Path, cache_url: str, tries: int = 30) -> int:
    env = _env(tmp_path, cache_url)
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is installed with the project"
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=300)
    ports = [_free_port(), _free_port()]
    procs = [
        subprocess.Popen(
            [gunicorn, "mission_control.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            _wait(port, proc)
        codes = [_post(ports[i % 2]) for i in range(tries)]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    assert set(codes) <= {401, 429}, codes
    return sum(code != 429 for code in codes)


@pytest.mark.slow
def test_the_login_throttle_holds_across_two_gunicorn_processes(tmp_path: Path) -> None:
    # 10 per window per address (the "login" throttle), requests alternating between
    # the two processes: the database cache (the production default) counts them once.
    assert allowed_over_two_gunicorns(tmp_path, "") == 10


@pytest.mark.slow
def test_control_a_per_process_cache_lets_each_gunicorn_allow_the_full_rate(
    tmp_path: Path,
) -> None:
    assert allowed_over_two_gunicorns(tmp_path, "locmemcache://") == 20
