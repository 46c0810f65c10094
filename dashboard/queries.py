"""Read-side queries of the dashboard. Each returns plain data for one page or
partial, with a number of queries that does not grow with the rows shown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from orchestrator import actions, counting
from orchestrator.models import (
    BrowserSession,
    ItemThroughput,
    Mission,
    MissionEvent,
    MissionItem,
)
from orchestrator.states import RUNNING, SESSION_LIVE, MissionStatus
from registry.models import HealthStatus, Proxy, ProxyStatus, ProxyType, Worker

PAGE_SIZE = 50
PERIODS: dict[str, tuple[str, dt.timedelta]] = {
    "1h": ("Última hora", dt.timedelta(hours=1)),
    "24h": ("Últimas 24 h", dt.timedelta(hours=24)),
    "7d": ("Últimos 7 dias", dt.timedelta(days=7)),
    "30d": ("Últimos 30 dias", dt.timedelta(days=30)),
}


# --- Visão geral ----------------------------------------------------------------------


@dataclass
class Bar:
    start: dt.datetime
    count: int
    height: float  # percent of the tallest bar

    # Geometry in the chart's 480x120 viewBox (20 units per hour).
    @property
    def x(self) -> float:
        return self.index * 20 + 3

    @property
    def h(self) -> float:
        return max(self.height * 1.16, 1.5 if self.count else 0)

    @property
    def y(self) -> float:
        return 120 - self.h

    index: int = 0


@dataclass(frozen=True)
class Ended:
    """Missions that ended (FINALIZADO or ERRO) today and in the last 24 h. Counts come
    from the newest `cap` terminal transitions: exact while the window holds no more,
    else scaled to the window from the time those cover (`approximate_*`)."""

    finished_today: int
    finished_24h: int
    errors_24h: int
    approximate_today: bool = False
    approximate_24h: bool = False

    @property
    def ended_24h(self) -> int:
        return self.finished_24h + self.errors_24h

    @property
    def error_rate_24h(self) -> float | None:
        return 100 * self.errors_24h / self.ended_24h if self.ended_24h else None


def ended_since(now: dt.datetime, start_of_day: dt.datetime, cap: int | None = None) -> Ended:
    """One query over `event_ended_idx` reading at most `cap + 1` index entries.
    FINALIZADO is final and reached once per mission, so its transitions since midnight
    are the missions finished today."""
    cap = counting.COUNT_CAP if cap is None else cap
    since_24h = now - dt.timedelta(hours=24)
    finished = Q(to_status=MissionStatus.FINALIZADO)
    sample = MissionEvent.objects.filter(
        kind=MissionEvent.Kind.TRANSITION,
        to_status__in=[MissionStatus.FINALIZADO, MissionStatus.ERRO],
        created_at__gte=min(start_of_day, since_24h),
    ).order_by("-created_at")[: cap + 1]
    agg = sample.aggregate(
        n=Count("id"),
        oldest=Min("created_at"),
        today=Count("id", filter=finished & Q(created_at__gte=start_of_day)),
        finished_24h=Count("id", filter=finished & Q(created_at__gte=since_24h)),
        errors_24h=Count(
            "id", filter=Q(to_status=MissionStatus.ERRO) & Q(created_at__gte=since_24h)
        ),
    )
    if agg["n"] <= cap:
        return Ended(agg["today"], agg["finished_24h"], agg["errors_24h"])
    # Truncated: the sample holds every ended mission since `oldest`. A window starting
    # later is exact; one starting earlier is scaled by its length over the sample's.
    oldest: dt.datetime = agg["oldest"]
    covered = max((now - oldest).total_seconds(), 1.0)

    def scaled(n: int, start: dt.datetime) -> tuple[int, bool]:
        if start >= oldest:
            return n, False
        return counting.round_estimate(n * (now - start).total_seconds() / covered), True

    today, approximate_today = scaled(agg["today"], start_of_day)
    finished_24h, approximate_24h = scaled(agg["finished_24h"], since_24h)
    errors_24h, _ = scaled(agg["errors_24h"], since_24h)
    return Ended(today, finished_24h, errors_24h, approximate_today, approximate_24h)


def items_finished_per_hour(
    since: dt.datetime, recent_since: dt.datetime
) -> Iterable[tuple[dt.datetime | None, int, int]]:
    """(hour, items finished in it, of which since `recent_since`) from `since` on."""
    if connection.vendor == "postgresql":
        recent_since = recent_since.replace(second=0, microsecond=0)  # whole minutes
        return (
            ItemThroughput.objects.filter(minute__gte=since)
            .annotate(h=TruncHour("minute"))
            .values("h")
            .annotate(total=Sum("n"), recent=Sum("n", filter=Q(minute__gte=recent_since)))
            .values_list("h", "total", "recent")
            .order_by()
        )
    return (
        MissionItem.objects.filter(finished_at__gte=since)
        .annotate(h=TruncHour("finished_at"))
        .values_list("h")
        .annotate(n=Count("id"), recent=Count("id", filter=Q(finished_at__gte=recent_since)))
        .order_by()
    )


@dataclass
class Overview:
    counts: dict[str, int]
    queued: int
    running: int
    finished_today: int
    error_rate_24h: float | None
    ended_24h: int
    items_per_min: float
    throughput: list[Bar]
    throughput_max: int
    throughput_total: int
    capacity_used: int
    capacity_total: int
    offline_slots: int  # sessions of enabled workers that are offline (not counted)
    workers_online: int
    workers_total: int
    proxy_rows: list[dict[str, Any]]
    latest_errors: list[ErrorGroup]
    item_failures: ItemFailures
    # (value, label, count, approximate) per mission state.
    states: list[tuple[str, str, int, bool]] = field(default_factory=list)
    # The figures above that are estimates: "queued", "running", "finished_today",
    # "error_rate" (shown with "≈").
    approximate: frozenset[str] = frozenset()

    @property
    def capacity_pct(self) -> float:
        return 100 * self.capacity_used / self.capacity_total if self.capacity_total else 0.0

    @property
    def approx(self) -> dict[str, bool]:
        """`approximate` for templates: `o.approx.queued`."""
        keys = ("queued", "running", "finished_today", "error_rate")
        return {key: key in self.approximate for key in keys}


ERROR_WINDOW = 100  # newest error events read for "Erros recentes", grouped
ERROR_GROUPS = 8


@dataclass
class ErrorGroup:
    """Repeated errors of one code in one mission, newest first, with how many."""

    first: MissionEvent
    count: int = 1

    @property
    def error_code(self) -> str:
        return self.first.error_code


def group_errors(events: Iterable[MissionEvent]) -> list[ErrorGroup]:
    groups: dict[tuple[str, int], ErrorGroup] = {}
    for event in events:
        key = (event.error_code, event.mission_id)
        if key in groups:
            groups[key].count += 1
        elif len(groups) < ERROR_GROUPS:
            groups[key] = ErrorGroup(event)
    return list(groups.values())


@dataclass
class ItemFailures:
    """Items that ended with an error code in a window: per code and per domain."""

    total: int = 0
    by_code: list[tuple[str, int]] = field(default_factory=list)
    by_domain: list[tuple[str, int]] = field(default_factory=list)


def item_failures_since(since: dt.datetime, limit: int = 500) -> ItemFailures:
    """One query over the finished-items index; at most `limit` (code, domain) pairs."""
    rows = list(
        MissionItem.objects.filter(finished_at__gte=since)
        .exclude(error_code="")
        .values_list("error_code", "mission__domain")
        .annotate(n=Count("id"))
        .order_by("-n")[:limit]
    )
    codes: dict[str, int] = {}
    domains: dict[str, int] = {}
    for code, domain, n in rows:
        codes[code] = codes.get(code, 0) + n
        domains[domain] = domains.get(domain, 0) + n
    top = sorted
    return ItemFailures(
        total=sum(codes.values()),
        by_code=top(codes.items(), key=lambda kv: -kv[1])[:6],
        by_domain=top(domains.items(), key=lambda kv: -kv[1])[:6],
    )


def overview(now: dt.datetime, cap: int | None = None) -> Overview:
    """Seven queries (seven when a state count passes `cap` and is estimated), none
    reading more than `cap + 1` rows of the mission or event tables."""
    status_counts = actions.mission_counts_by_status(cap=cap)
    counts = status_counts.counts
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    ended = ended_since(now, start_of_day, cap=cap)

    # Items finished per hour over the last 24 h and in the last 10 minutes, in one
    # query: on PostgreSQL from the per-minute counters its trigger keeps (at most
    # 24 x 60 x 8 small rows), elsewhere by counting the items.
    window = dt.timedelta(minutes=10)
    hour0 = timezone.localtime(now).replace(minute=0, second=0, microsecond=0) - dt.timedelta(
        hours=23
    )
    per_hour: dict[dt.datetime, int] = {}
    items_recent = 0
    for h, n, recent in items_finished_per_hour(hour0, now - window):
        items_recent += recent or 0
        if h is not None:
            per_hour[timezone.localtime(h).replace(tzinfo=None)] = n
    hours = [hour0 + dt.timedelta(hours=i) for i in range(24)]
    series = [per_hour.get(h.replace(tzinfo=None), 0) for h in hours]
    top = max(series) if any(series) else 0
    bars = [
        Bar(h, n, (n / top * 100) if top else 0, index=i)
        for i, (h, n) in enumerate(zip(hours, series, strict=True))
    ]

    # An offline worker's slots are not capacity: the allocator skips offline workers.
    up = ~Q(health_status=HealthStatus.OFFLINE)
    cap_row = Worker.objects.filter(enabled=True).aggregate(
        used=Sum("active_sessions", filter=up),
        total=Sum("max_sessions", filter=up),
        offline_slots=Sum("max_sessions", filter=~up),
        online=Count("id", filter=Q(health_status=HealthStatus.OK)),
        n=Count("id"),
    )
    proxies: dict[tuple[str, str], dict[str, Any]] = {}
    for ptype, country, status, enabled, n in (
        Proxy.objects.values_list("type", "country", "status", "enabled")
        .annotate(n=Count("id"))
        .order_by("type", "country")
    ):
        # A proxy switched off is not available, whatever its last status says.
        status = status if enabled else ProxyStatus.DISABLED
        row = proxies.setdefault(
            (ptype, country),
            {
                "type": ptype,
                "type_label": ProxyType(ptype).label if ptype in ProxyType.values else ptype,
                "country": country or "—",
                "total": 0,
                **{s: 0 for s in ProxyStatus.values},
            },
        )
        row[status] = row.get(status, 0) + n
        row["total"] += n
    for row in proxies.values():
        row["health"] = 100 * row[ProxyStatus.AVAILABLE] / row["total"] if row["total"] else 0
    latest_errors = group_errors(
        MissionEvent.objects.exclude(error_code="")
        .select_related("mission")
        .only("id", "created_at", "error_code", "message", "kind", "mission__id", "mission__name")[
            :ERROR_WINDOW
        ]
    )
    item_failures = item_failures_since(now - dt.timedelta(hours=24))
    approximate = {
        key
        for key, flag in (
            ("queued", status_counts.any_approximate([MissionStatus.QUEUED])),
            ("running", status_counts.any_approximate(sorted(RUNNING))),
            ("finished_today", ended.approximate_today),
            ("error_rate", ended.approximate_24h),
        )
        if flag
    }
    return Overview(
        counts=counts,
        queued=counts.get(MissionStatus.QUEUED, 0),
        running=status_counts.total(sorted(RUNNING)),
        finished_today=ended.finished_today,
        error_rate_24h=ended.error_rate_24h,
        ended_24h=ended.ended_24h,
        items_per_min=items_recent / (window.total_seconds() / 60),
        throughput=bars,
        throughput_max=top,
        throughput_total=sum(series),
        capacity_used=cap_row["used"] or 0,
        capacity_total=cap_row["total"] or 0,
        offline_slots=cap_row["offline_slots"] or 0,
        workers_online=cap_row["online"] or 0,
        workers_total=cap_row["n"] or 0,
        proxy_rows=list(proxies.values()),
        latest_errors=latest_errors,
        item_failures=item_failures,
        states=[
            (s.value, s.label, counts.get(s.value, 0), s.value in status_counts.approximate)
            for s in MissionStatus
        ],
        approximate=frozenset(approximate),
    )


# --- Missões --------------------------------------------------------------------------


@dataclass(frozen=True)
class MissionFilters:
    status: str = ""
    domain: str = ""
    period: str = ""
    q: str = ""
    review: bool = False  # `revisao=1`: only missions flagged `needs_review`

    @classmethod
    def from_query(cls, data: Any) -> MissionFilters:
        status = data.get("status", "")
        period = data.get("period", "")
        return cls(
            status=status if status in MissionStatus.values else "",
            domain=(data.get("domain") or "").strip()[:253],
            period=period if period in PERIODS else "",
            q=(data.get("q") or "").strip()[:200],
            review=data.get("revisao") == "1",
        )

    def apply(self, qs: QuerySet[Mission], now: dt.datetime) -> QuerySet[Mission]:
        if self.status:
            qs = qs.filter(status=self.status)
        if self.domain:
            qs = qs.filter(domain__icontains=self.domain)
        if self.period:
            qs = qs.filter(created_at__gte=now - PERIODS[self.period][1])
        if self.q:
            cond = Q(name__icontains=self.q) | Q(domain__icontains=self.q)
            if self.q.lstrip("#").isdigit():
                cond |= Q(pk=int(self.q.lstrip("#")))
            qs = qs.filter(cond)
        if self.review:
            qs = qs.filter(needs_review=True)
        return qs

    @property
    def active(self) -> bool:
        return bool(self.status or self.domain or self.period or self.q or self.review)


@dataclass
class KeysetPage:
    rows: list[Any]
    older: int | None  # `before` cursor for the next (older) page
    newer: int | None  # `after` cursor for the previous (newer) page
    is_first: bool


def _int(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def keyset(qs: QuerySet[Any], data: Any, size: int = PAGE_SIZE) -> KeysetPage:
    """Newest first, paged by id: `?before=<id>` (older) or `?after=<id>` (newer).
    No COUNT over the table: one extra row tells whether there is a next page."""
    before, after = _int(data.get("before")), _int(data.get("after"))
    if after is not None and before is None:
        rows = list(qs.filter(pk__gt=after).order_by("pk")[: size + 1])
        has_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        return KeysetPage(
            rows,
            older=rows[-1].pk if rows else None,
            newer=rows[0].pk if rows and has_newer else None,
            is_first=not has_newer,
        )
    if before is not None:
        qs = qs.filter(pk__lt=before)
    rows = list(qs.order_by("-pk")[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows,
        older=rows[-1].pk if rows and has_older else None,
        newer=rows[0].pk if rows and before is not None else None,
        is_first=before is None,
    )


def missions_page(filters: MissionFilters, data: Any, now: dt.datetime) -> KeysetPage:
    qs = filters.apply(Mission.objects.all(), now).only(
        "id",
        "name",
        "domain",
        "status",
        "priority",
        "attempt",
        "total_items",
        "done_items",
        "failed_items",
        "created_at",
        "wait_reason",
        "error_code",
        "next_attempt_at",
        "needs_review",
    )
    return keyset(qs, data)


# --- Detalhe da missão ----------------------------------------------------------------


LIVE_SESSION_ROWS = 50
ENDED_SESSION_GROUPS = 20


@dataclass
class SessionGroup:
    """Ended sessions of one mission with the same state and error, counted."""

    status: str
    error_code: str
    count: int
    last_activity_at: dt.datetime | None
    # One of the group's error messages (they differ only in addresses and ids).
    sample: str = ""


@dataclass
class MissionSessions:
    live: list[BrowserSession]
    live_more: bool
    ended: list[SessionGroup]


def mission_sessions(mission: Mission) -> MissionSessions:
    """Live sessions one by one (at most LIVE_SESSION_ROWS); ended ones grouped by state
    and error with counts, so the page stays the same size however many rotations."""
    live = list(
        BrowserSession.objects.filter(mission=mission, status__in=SESSION_LIVE)
        .select_related("worker")
        .only(
            "id",
            "session_key",
            "status",
            "phase",
            "provider",
            "provider_session_id",
            "provider_inspect_url",
            "proxy_type",
            "proxy_country",
            "proxy_external_id",
            "last_activity_at",
            "items_done",
            "items_failed",
            "error_code",
            "error_message",
            "attempt",
            "worker__id",
            "worker__name",
        )
        .order_by("-id")[: LIVE_SESSION_ROWS + 1]
    )
    ended = [
        SessionGroup(status, code, n, last, sample or "")
        for status, code, n, last, sample in BrowserSession.objects.filter(mission=mission)
        .exclude(status__in=SESSION_LIVE)
        .values_list("status", "error_code")
        .annotate(n=Count("id"), last=Max("last_activity_at"), sample=Max("error_message"))
        .order_by("-n")[:ENDED_SESSION_GROUPS]
    ]
    return MissionSessions(live[:LIVE_SESSION_ROWS], len(live) > LIVE_SESSION_ROWS, ended)


def mission_items(mission: Mission, status: str, data: Any) -> KeysetPage:
    qs = MissionItem.objects.filter(mission=mission)
    if status:
        qs = qs.filter(status=status)
    return keyset(
        qs.only("id", "url", "status", "attempts", "error_code", "http_status", "finished_at"),
        data,
        size=25,
    )


@dataclass
class EventPage:
    rows: list[MissionEvent]
    older: int | None  # id to pass as `eventos_antes` for the next (older) page


def mission_events(mission: Mission, data: Any = None, limit: int = 40) -> EventPage:
    """Newest first, `limit` a page; `?eventos_antes=<id>` walks older pages."""
    qs = MissionEvent.objects.filter(mission=mission)
    before = str((data or {}).get("eventos_antes", ""))
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    rows = list(qs.order_by("-id")[: limit + 1])
    older = rows[limit - 1].pk if len(rows) > limit else None
    return EventPage(rows[:limit], older)


def live_sessions(limit: int = 100) -> list[BrowserSession]:
    return list(
        BrowserSession.objects.filter(status__in=SESSION_LIVE)
        .select_related("worker", "mission")
        .only(
            "id",
            "status",
            "phase",
            "provider",
            "provider_session_id",
            "proxy_type",
            "proxy_country",
            "proxy_external_id",
            "last_activity_at",
            "items_done",
            "worker__name",
            "mission__id",
            "mission__name",
        )
        .order_by("-id")[:limit]
    )
