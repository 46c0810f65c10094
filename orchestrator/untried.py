"""Items that failed on a proxy wait for a session on a proxy they have not tried
(issue #15 case 4): an item is never handed back to a proxy that failed it, nor failed
for good, while a fitting proxy it has not tried exists or is being opened.

The dispatcher holds such items and retires a session that none of its mission's
pending items may use any more; `allocation.replenish_sessions` asks for a session on
a proxy they have not tried (`avoid_for_new_sessions`); once every fitting proxy has
failed them, they take their remaining attempts on one they have tried.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from orchestrator import eligibility, proxy_health
from orchestrator.models import MissionItem
from orchestrator.states import ItemStatus
from registry.models import Proxy, SiteConfig


def fitting_proxies(site: SiteConfig, domain: str, now: dt.datetime) -> frozenset[str]:
    """External ids of the proxies a session of `site` on `domain` may ever use, busy or
    resting or not (`eligibility.present_q`), minus those blocked for the domain."""
    learned = proxy_health.blocked_external_ids(domain, now)
    rule = eligibility.ProxyRule.for_site(site, learned)
    return frozenset(
        Proxy.objects.filter(eligibility.present_q(rule)).values_list("external_id", flat=True)
    )


def _failed_lists(mission_id: int) -> list[list[str]] | None:
    """The `failed_proxies` of the mission's pending items; None when one of them has
    failed on no proxy (then no proxy is tried by all)."""
    pending = MissionItem.objects.filter(mission_id=mission_id, status=ItemStatus.PENDING)
    if pending.filter(failed_proxies=[]).exists():
        return None
    return [list(fp or ()) for fp in pending.values_list("failed_proxies", flat=True)]


def tried_by_every_pending(mission_id: int) -> frozenset[str]:
    """The proxies every pending item of the mission has failed on (a session on one of
    them has nothing to do): empty when an item failed on none, or none is pending."""
    lists = _failed_lists(mission_id)
    if not lists:
        return frozenset()
    common = set(lists[0])
    for failed in lists[1:]:
        common &= set(failed)
    return frozenset(common)


def avoid_for_new_sessions(
    mission_id: int, site: SiteConfig, domain: str, now: dt.datetime
) -> frozenset[str]:
    """The proxies a new session of the mission should not be opened on: those every
    pending item already failed on, while a fitting proxy outside them exists. When
    they are all the fitting proxies there are, none is avoided: the items take their
    remaining attempts on a proxy they have tried (the attempt budget bounds it), as
    the dispatcher's "retry anyway" does, rather than wait for a proxy that will never
    exist."""
    tried = tried_by_every_pending(mission_id)
    if tried and fitting_proxies(site, domain, now) - tried:
        return tried
    return frozenset()


def first_stuck(mission_id: int, serving: Iterable[str]) -> frozenset[str] | None:
    """The failed proxies of the first pending item that failed on the proxy of every
    session serving the mission (None when there is none, or a session has no proxy)."""
    proxies = set(serving)
    if not proxies or "" in proxies:
        return None
    for failed in (
        MissionItem.objects.filter(mission_id=mission_id, status=ItemStatus.PENDING)
        .exclude(failed_proxies=[])
        .order_by("id")
        .values_list("failed_proxies", flat=True)
    ):
        if proxies <= set(failed or ()):
            return frozenset(failed)
    return None
