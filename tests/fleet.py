"""The fleet the engine's tests register alike, stepped or with real processes: config
values, the loopback fake worker and writer, datacenter proxies `px-0`… and the `*`
site rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from registry import config
from registry.models import Proxy, SiteConfig, Worker, Writer
from tests import factories
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter


def fast_settings(tick_s: float, **extra: object) -> dict[str, object]:
    """Every manager ticking each `tick_s`, retries without backoff or jitter, no proxy
    cooldown, one HTTP attempt per call; `extra` adds or overrides keys."""
    return {
        "session_tick_s": tick_s,
        "worker_tick_s": tick_s,
        "mission_tick_s": tick_s,
        "retry_backoff_base_s": 0.0,
        "retry_jitter": 0.0,
        "proxy_cooldown_s": 0,
        "http_max_attempts": 1,
        **extra,
    }


@dataclass
class Registered:
    worker: Worker
    writer: Writer
    proxies: list[Proxy]
    site: SiteConfig


def register_fleet(
    fake_worker: FakeWorker,
    fake_writer: FakeWriter,
    *,
    settings: Mapping[str, object],
    proxies: int,
    items_per_job: int,
    max_sessions: int,
    worker_sessions: int = 8,
) -> Registered:
    """Set `settings`, then register the fakes (the writer as default), `proxies`
    datacenter proxies and the `*` rule with `items_per_job` and `max_sessions`."""
    for key, value in settings.items():
        config.set_value(key, value)
    worker = factories.WorkerFactory(
        base_url=fake_worker.base_url,
        api_key=fake_worker.api_key or "",
        max_sessions=worker_sessions,
    )
    writer = factories.WriterFactory(
        base_url=fake_writer.base_url, api_key=fake_writer.api_key or "", is_default=True
    )
    registered = [
        factories.ProxyFactory(external_id=f"px-{i}", type="datacenter") for i in range(proxies)
    ]
    site = factories.SiteConfigFactory(
        domain="*",
        proxy_types=["datacenter"],
        items_per_job=items_per_job,
        max_sessions=max_sessions,
    )
    return Registered(worker, writer, registered, site)
