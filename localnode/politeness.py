"""How the local worker treats a site (worker-api v1.1 job options): a pause of
`delay_ms` between two requests of one session, robots.txt honoured when
`respect_robots` is true (fetched through the session's proxy and cached per site and
route, parsed by Protego, Scrapy's parser), its `Crawl-delay` honoured when larger.

The clock and the sleep are injected, so tests count time without waiting for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from protego import Protego

ROBOTS_TTL_S = 3600.0
# A robots.txt that could not be read (network, 5xx) is retried after this long.
ROBOTS_RETRY_S = 60.0
ROBOTS_TIMEOUT_S = 10.0
ROBOTS_MAX_BYTES = 512 * 1024
# A pause longer than this would outlive the job's lease (runner.LEASE_S).
MAX_DELAY_S = 60.0


def site_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass
class Pacer:
    """The last request time of each session, and the wait before its next one."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _last: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_turn(self, session: str, delay_s: float) -> float:
        """Sleep until `delay_s` has passed since this session's last request ended.
        Returns how long it slept. Counting from the end (not the start) of the last
        request means the site sees at least `delay_s` between two arrivals, whatever
        the network's jitter."""
        with self._lock:
            last = self._last.get(session)
        waited = 0.0
        if last is not None and delay_s > 0:
            waited = max(0.0, last + delay_s - self.clock())
            if waited:
                self.sleep(waited)
        return waited

    def done(self, session: str) -> None:
        """Record that a request of `session` just ended."""
        with self._lock:
            self._last[session] = self.clock()

    def forget(self, session: str) -> None:
        with self._lock:
            self._last.pop(session, None)


@dataclass
class _Rules:
    parser: Protego | None  # None: allow everything
    expires: float
    state: str  # "ok", "missing" (4xx), "unreadable"


@dataclass
class RobotsCache:
    """robots.txt per (site, proxy route), fetched at most once per TTL."""

    clock: Callable[[], float] = time.monotonic
    _rules: dict[tuple[str, str], _Rules] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rules(self, url: str, proxy_url: str | None, headers: dict[str, str]) -> _Rules:
        key = (site_of(url), proxy_url or "")
        with self._lock:
            cached = self._rules.get(key)
        if cached is not None and cached.expires > self.clock():
            return cached
        fetched = self._fetch(key[0], proxy_url, headers)
        with self._lock:
            self._rules[key] = fetched
        return fetched

    def _fetch(self, site: str, proxy_url: str | None, headers: dict[str, str]) -> _Rules:
        now = self.clock()
        try:
            with httpx.Client(
                proxy=proxy_url or None,
                trust_env=False,
                follow_redirects=True,
                timeout=ROBOTS_TIMEOUT_S,
                headers=headers,
            ) as client:
                response = client.get(f"{site}/robots.txt")
        except (httpx.HTTPError, ValueError):
            return _Rules(None, now + ROBOTS_RETRY_S, "unreadable")
        if 400 <= response.status_code < 500:
            return _Rules(None, now + ROBOTS_TTL_S, "missing")
        if response.status_code >= 500:
            return _Rules(None, now + ROBOTS_RETRY_S, "unreadable")
        text = response.content[:ROBOTS_MAX_BYTES].decode("utf-8", "replace")
        return _Rules(Protego.parse(text), now + ROBOTS_TTL_S, "ok")

    def check(self, url: str, proxy_url: str | None, headers: dict[str, str]) -> tuple[bool, float]:
        """(may this URL be fetched, the site's Crawl-delay in seconds or 0)."""
        rules = self.rules(url, proxy_url, headers)
        if rules.parser is None:
            return True, 0.0
        agent = headers.get("User-Agent", "*")
        delay = rules.parser.crawl_delay(agent) or 0.0
        return bool(rules.parser.can_fetch(url, agent)), float(delay)


PACER = Pacer()
ROBOTS = RobotsCache()


@dataclass(frozen=True)
class Manners:
    """A job's options as the runner uses them."""

    delay_s: float = 0.0
    respect_robots: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, object]) -> Manners:
        delay = options.get("delay_ms")
        headers = options.get("headers")
        return cls(
            delay_s=min(float(delay) / 1000, MAX_DELAY_S)
            if isinstance(delay, int | float) and delay > 0
            else 0.0,
            respect_robots=options.get("respect_robots") is True,
            headers=dict(headers) if isinstance(headers, dict) else {},
        )
