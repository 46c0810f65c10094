"""WorkerManager, dispatch: claims ready sessions, chooses their next job's items with
the distributor and gives each its job key; the job is then started on the worker by
`job_start`, fenced by the session's lease."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from functools import cache, partial

from django.db import connection, transaction
from django.db.models import Case, CharField, F, IntegerField, Q, Value, When, Window
from django.db.models.functions import RowNumber

from orchestrator import events, leases, pgbatch, proxy_health, untried
from orchestrator.distributor import ItemInfo, SessionInfo, SiteRule, items_to_sessions
from orchestrator.managers.base import leases_q, release_many, site_configs, update_in_id_order
from orchestrator.managers.job_start import JobStart
from orchestrator.managers.results import JOB_STARTING
from orchestrator.models import BrowserSession, MissionItem
from orchestrator.states import ItemStatus, MissionStatus, SessionStatus
from registry.config import Config
from registry.models import SiteConfig

USELESS = "os itens pendentes já falharam neste proxy"


class JobDispatch(JobStart):
    """Jobs for ready sessions (`WorkerManager.dispatch_jobs`), started by `JobStart`."""

    def dispatch_jobs(self, now: dt.datetime, cfg: Config) -> int:
        """Hand ready sessions their next job. Every step is batched over the claimed
        sessions (a few statements per tick, not per session); only the worker calls go
        one by one, each with its idempotency key (`job_key`) and no lock held."""
        claimed = leases.claim(
            BrowserSession,
            Q(
                status=SessionStatus.READY,
                holds_slot=True,
                attempt=F("mission__attempt"),
                mission__status__in=[MissionStatus.ATRIBUIDO, MissionStatus.EXTRAINDO],
            )
            & (Q(job_key="") | Q(job_status=JOB_STARTING)),
            owner=self.owner,
            lease_s=cfg.lease_s,
            limit=cfg.claim_batch_size * 5,
        )
        if not claimed:
            return 0
        tokens = {lease.id: lease for lease in claimed}
        sessions = list(
            BrowserSession.objects.filter(id__in=tokens)
            .select_related("worker", "mission")
            .order_by("id")
        )
        sites = site_configs({s.mission.domain for s in sessions})
        # A session on a proxy blocked for its site gets no more jobs: it is replaced.
        retired = proxy_health.retire_claimed(sessions, self.owner, now)
        sessions = [s for s in sessions if s.pk not in retired]
        fresh = [s for s in sessions if not s.job_key]
        if fresh:
            self._assign_items(fresh, sites, tokens, now)
        return self._start_jobs(self._to_start(sessions, tokens), tokens, sites, now, cfg)

    def _to_start(
        self, sessions: list[BrowserSession], tokens: dict[int, leases.Lease]
    ) -> list[BrowserSession]:
        """The sessions still ours with a job to start; the others still ours (no job
        for them) are released, and those ended or rotated meanwhile (another process
        bumped the token) left alone."""
        current = {
            pk: (token, locked_by, job_key, job_status)
            for pk, token, locked_by, job_key, job_status in BrowserSession.objects.filter(
                id__in=tokens
            ).values_list("id", "lease_token", "locked_by", "job_key", "job_status")
        }
        starting: list[BrowserSession] = []
        idle: list[leases.Lease] = []
        for session in sessions:
            lease = tokens[session.pk]
            token, locked_by, job_key, job_status = current.get(session.pk, (None, "", "", ""))
            if token != lease.token or locked_by != self.owner:
                continue
            session.job_key, session.job_status = job_key, job_status
            if job_status == JOB_STARTING:
                starting.append(session)
            else:
                idle.append(lease)
        release_many(BrowserSession, idle, self.owner)
        return starting

    def _assign_items(
        self,
        sessions: list[BrowserSession],
        sites: dict[str, SiteConfig],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
    ) -> None:
        """Choose each fresh session's items with the distributor and give it a job key:
        one read of the pending items of every mission, one write of the sessions and
        one of the items."""
        by_mission: dict[int, list[BrowserSession]] = defaultdict(list)
        for session in sessions:
            by_mission[session.mission_id].append(session)
        chosen, drained, useless = self._choose(by_mission, sites, tokens, now)
        if drained:
            self._close_drained(drained)
        if useless:
            proxy_health.retire_claimed(useless, self.owner, now, why=USELESS)
        if chosen:
            self._give_jobs(sessions, chosen, tokens, now)

    def _choose(
        self,
        by_mission: dict[int, list[BrowserSession]],
        sites: dict[str, SiteConfig],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
    ) -> tuple[dict[int, list[int]], list[leases.Lease], list[BrowserSession]]:
        """(item ids chosen per session, the leases of sessions whose mission has
        nothing left to hand out, the sessions to retire as `_useless`)."""
        pending = _pending_items(by_mission, sites)
        opening = _opening_proxies(by_mission)
        chosen: dict[int, list[int]] = {}
        drained: list[leases.Lease] = []
        useless: list[BrowserSession] = []
        for mission_id, group in by_mission.items():
            items = sorted(pending.get(mission_id, []))
            if not items:
                # Nothing left to hand out: idle sessions free their slots early.
                drained.extend(tokens[s.pk] for s in group)
                continue
            site = sites[group[0].mission.domain]
            domain = group[0].mission.domain
            waiting: list[int] = []
            picked_by = self._distribute(
                group,
                items,
                site,
                opening.get(mission_id, set()),
                fitting=cache(partial(untried.fitting_proxies, site, domain, now)),
                held=waiting,
            )
            for session_id, picked in picked_by.items():
                if picked:
                    chosen[session_id] = picked
            if waiting:
                useless.extend(self._useless(mission_id, group, picked_by))
        return chosen, drained, useless

    def _close_drained(self, drained: list[leases.Lease]) -> None:
        update_in_id_order(
            BrowserSession.objects.filter(
                leases_q(drained),
                locked_by=self.owner,
                status=SessionStatus.READY,
                job_key="",
            ),
            status=SessionStatus.CLOSING,
            locked_by="",
            locked_until=None,
        )
        events.publish("session.closing")

    def _give_jobs(
        self,
        sessions: list[BrowserSession],
        chosen: dict[int, list[int]],
        tokens: dict[int, leases.Lease],
        now: dt.datetime,
    ) -> None:
        """Give the sessions still ours and jobless their next job key and their items."""
        with transaction.atomic():
            # Lock the sessions still ours and jobless; their job_seq names the new job.
            held = BrowserSession.objects.filter(
                leases_q([tokens[pk] for pk in chosen]),
                locked_by=self.owner,
                status=SessionStatus.READY,
                job_key="",
            )
            seqs = dict(held.filter(pk__in=leases.hold(held)).values_list("id", "job_seq"))
            if not seqs:
                return
            keys = {s.pk: f"{s.session_key}-j{seqs[s.pk] + 1}" for s in sessions if s.pk in seqs}
            BrowserSession.objects.filter(pk__in=list(seqs)).update(
                job_seq=F("job_seq") + 1,
                job_key=pgbatch.by_pk(BrowserSession, keys, CharField()),
                job_status=JOB_STARTING,
                job_cursor="",
                job_pages=0,
                job_remote_id="",
                job_started_at=now,
            )
            _assign({pk: chosen[pk] for pk in seqs}, keys)

    @staticmethod
    def _useless(
        mission_id: int, group: list[BrowserSession], picked_by: dict[int, list[int]]
    ) -> list[BrowserSession]:
        """The sessions of a mission that got no item while items were held for a
        session on a proxy they have not tried, and that no pending item may use any
        more (every one failed on their proxy): they are retired, so the mission gets a
        session on another proxy."""
        idle = [s for s in group if not picked_by.get(s.pk) and s.proxy_external_id]
        if not idle:
            return []
        tried = untried.tried_by_every_pending(mission_id)
        return [s for s in idle if s.proxy_external_id in tried]

    @staticmethod
    def _distribute(
        sessions: list[BrowserSession],
        pending: list[tuple[int, str, list[str]]],
        site: SiteConfig,
        opening: AbstractSet[str] = frozenset(),
        *,
        fitting: Callable[[], AbstractSet[str]] = frozenset,
        held: list[int] | None = None,
    ) -> dict[int, list[int]]:
        """The distributor's choice of item ids per session of one mission. `opening`:
        the proxies of the mission's sessions being opened; `fitting`: the proxies that
        fit the site (`untried.fitting_proxies`, asked only when needed). Items that
        failed on every live session's proxy wait (their ids are added to `held`) while
        a fitting proxy they have not tried exists or is being opened."""
        per_job = site.items_per_job
        infos = [
            SessionInfo(
                id=s.pk,
                proxy_id=s.proxy_external_id or None,
                proxy_type=s.proxy_type or None,
                proxy_geo=s.proxy_country or None,
                capacity=per_job,
            )
            for s in sessions
        ]
        rules = [SiteRule.from_site_config(site)]
        items = [
            ItemInfo(id=i, url=u, excluded_proxies=frozenset(fp or ())) for i, u, fp in pending
        ]
        distribution = items_to_sessions(items, infos, rules)
        by_session = distribution.by_session()
        retry_anyway = []
        for u in distribution.unassigned:
            if u.reason.value != "all_fitting_proxies_blocked":
                continue
            tried = u.item.excluded_proxies
            if opening - tried - {""} or fitting() - tried:
                if held is not None:
                    held.append(u.item.id)
            else:
                retry_anyway.append(u.item)
        if retry_anyway:
            # Every live proxy already failed these items, none they have not tried
            # exists or is being opened (else they wait for a session on it: issue #15
            # case 4). Better another try on one of them (the attempt budget still
            # bounds it) than items stuck pending.
            left = [
                SessionInfo(
                    id=info.id,
                    proxy_id=info.proxy_id,
                    proxy_type=info.proxy_type,
                    proxy_geo=info.proxy_geo,
                    capacity=per_job - len(by_session.get(info.id, [])),
                )
                for info in infos
            ]
            second = items_to_sessions(
                [ItemInfo(id=i.id, url=i.url) for i in retry_anyway], left, rules
            ).by_session()
            for session_id, extra in second.items():
                by_session.setdefault(session_id, []).extend(extra)
        return {pk: [i.id for i in chosen] for pk, chosen in by_session.items()}


def _pending_items(
    by_mission: dict[int, list[BrowserSession]], sites: dict[str, SiteConfig]
) -> dict[int, list[tuple[int, str, list[str]]]]:
    """(id, url, failed proxies) of the first pending items of each mission, enough for
    its sessions' jobs and a choice: fresh items first, so that items that failed
    before (some waiting for a session on a proxy they have not tried) do not crowd
    the window out."""
    wants = {
        mission_id: sites[group[0].mission.domain].items_per_job * len(group) * 4
        for mission_id, group in by_mission.items()
    }
    rank = Window(
        RowNumber(),
        partition_by=[F("mission_id")],
        order_by=[F("attempts").asc(), F("id").asc()],
    )
    pending: dict[int, list[tuple[int, str, list[str]]]] = defaultdict(list)
    for mission_id, item_id, url, failed, n in pgbatch.raw_rows(
        MissionItem.objects.filter(mission_id__in=list(by_mission), status=ItemStatus.PENDING)
        .annotate(n=rank)
        .filter(n__lte=max(wants.values()))
        .values_list("mission_id", "id", "url", "failed_proxies", "n")
    ):
        if n <= wants[mission_id]:
            pending[mission_id].append((item_id, url, _json_list(failed)))
    return pending


def _json_list(stored: str) -> list[str]:
    """A JSON list column as `pgbatch.raw_rows` reads it: its text (PostgreSQL's jsonb
    as Django's connection loads it, SQLite's text)."""
    return [] if stored == "[]" else list(json.loads(stored))


def _opening_proxies(by_mission: dict[int, list[BrowserSession]]) -> dict[int, set[str]]:
    """The proxies of each mission's sessions being opened."""
    opening: dict[int, set[str]] = defaultdict(set)
    for mission_id, proxy in BrowserSession.objects.filter(
        mission_id__in=list(by_mission),
        status__in=[SessionStatus.REQUESTED, SessionStatus.CREATING],
    ).values_list("mission_id", "proxy_external_id"):
        opening[mission_id].add(proxy)
    return opening


def _assign(chosen: dict[int, list[int]], keys: dict[int, str]) -> None:
    """Give the items `chosen` for each session that session and its job key, if still
    pending: one statement over arrays on PostgreSQL (a CASE per session for the ORM)."""
    if pgbatch.on_postgresql():
        rows = [(item_id, pk) for pk, ids in chosen.items() for item_id in ids]
        table = connection.ops.quote_name(MissionItem._meta.db_table)
        pgbatch.execute_unnest(
            f"UPDATE {table} AS t SET status = %(assigned)s, session_id = v.session_id, "
            "job_key = v.job_key, attempts = t.attempts + 1 FROM {rows} "
            "WHERE t.id = v.id AND t.status = %(pending)s",
            {
                "id": ("bigint", [item_id for item_id, _ in rows]),
                "session_id": ("bigint", [pk for _, pk in rows]),
                "job_key": ("text", [keys[pk] for _, pk in rows]),
            },
            {"assigned": ItemStatus.ASSIGNED.value, "pending": ItemStatus.PENDING.value},
        )
        return
    MissionItem.objects.filter(
        id__in=[item_id for ids in chosen.values() for item_id in ids], status=ItemStatus.PENDING
    ).update(
        status=ItemStatus.ASSIGNED,
        session_id=Case(
            *(When(id__in=ids, then=Value(pk)) for pk, ids in chosen.items()),
            output_field=IntegerField(),
        ),
        job_key=Case(*(When(id__in=ids, then=Value(keys[pk])) for pk, ids in chosen.items())),
        attempts=F("attempts") + 1,
    )
