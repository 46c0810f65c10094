"""Where the apps plug into the project layer, so `mission_control` never imports them.

An app registers a provider under a hook name in its `AppConfig.ready()`; the project
code that serves the hook (metrics, health, exports, bootstrap) asks for the providers.
Hooks used today:

- ``metrics``: ``fn(now) -> Iterable[prometheus Metric]`` (``mission_control.metrics``);
- ``orchestrator_fresh``: ``fn(now) -> bool``, a running orchestrator's heartbeat is
  fresh (``mission_control.health``);
- ``mission_exists``: ``fn(mission_id) -> bool`` (the built-in writer's export);
- ``demo_urls``: ``fn(base_url, n) -> list[str]``, pages the demo missions scrape.
- ``demo_private_urls``: ``fn(base_url, n) -> list[str]``, demo pages robots.txt disallows.
- ``demo_engine``: ``fn() -> (engine, reason)``, the engine the demo site runs with:
  ``("browser", "")`` when the built-in worker can start Chromium, else ``("http", why)``.
- ``mission_records``: ``fn(mission_id) -> records.ExternalRecords | None``, the external
  writer holding a mission's records (None: the built-in writer).
- ``mission_export_jsonl``: ``fn(mission_id) -> Iterator[str] | None``, a mission's export
  as JSON Lines (None: an external writer holds the records without read-back).
- ``mission_transition``: ``fn(missions, to, now) -> None``, called inside every mission
  transition's transaction (``orchestrator.models.after_transition``; the ETL outbox).
- ``prune_uploads``: ``fn(cutoff) -> int``, retention of the built-in uploader's files
  stored before ``cutoff`` (``orchestrator.retention``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_providers: dict[str, list[Callable[..., Any]]] = {}


def register(hook: str, provider: Callable[..., Any]) -> None:
    """Add ``provider`` to ``hook`` (idempotent: registering twice keeps one)."""
    entries = _providers.setdefault(hook, [])
    if provider not in entries:
        entries.append(provider)


def providers(hook: str) -> list[Callable[..., Any]]:
    return list(_providers.get(hook, ()))


def first(hook: str) -> Callable[..., Any]:
    """The one provider of ``hook``; LookupError when no app registered it."""
    found = _providers.get(hook)
    if not found:
        raise LookupError(f"no provider registered for {hook!r}")
    return found[0]
