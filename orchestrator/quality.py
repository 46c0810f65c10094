"""Quality gate before FINALIZADO: per-site rules checked when the writer confirmed.

Rules live in `SiteConfig.quality_rules` (the domain's, else `*`'s; parsed in
`registry.quality_rules`):

- `min_success_ratio` (0..1): done items / total items;
- `required_fields` + `required_fields_min_pct` (0..100, default 100): each field is
  present (not null/empty) in at least that share of the records;
- `min_records_pct_of_recent` (0..100) + `recent_missions` (default 5): records not
  below that share of the average of the domain's last N finished missions.

A failing mission still finishes FINALIZADO (the data is stored), flagged
`needs_review` with the failed rules listed; `quality.failed` is published for webhooks
and the timeline. Field presence is counted page by page in the transaction that saves
the page (`tally_page`), so a page re-fetched after a crash is never counted twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import F
from django.utils import timezone

from orchestrator import events
from orchestrator.models import Mission, MissionEvent, QualityFieldCount
from orchestrator.states import MissionStatus
from registry.quality_rules import Rules, rules_for

logger = logging.getLogger(__name__)


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def tally_page(mission: Mission, results: Iterable[Any], rules: Rules | None = None) -> None:
    """Count records and required fields of the ok results of a saved page (caller's
    transaction). No rules about fields: nothing to count. `rules`, when the caller
    already has the domain's, saves their lookup."""
    if rules is None:
        rules = rules_for(mission.domain)
    if not rules.required_fields:
        return
    counts = dict.fromkeys((QualityFieldCount.RECORDS, *rules.required_fields), 0)
    for r in results:
        if r.status != "ok":
            continue
        counts[QualityFieldCount.RECORDS] += 1
        data = r.data if isinstance(r.data, dict) else {}
        for name in rules.required_fields:
            if _present(data.get(name)):
                counts[name] += 1
    if not counts[QualityFieldCount.RECORDS]:
        return
    for name, n in counts.items():
        updated = QualityFieldCount.objects.filter(mission=mission, field=name).update(
            present=F("present") + n
        )
        if not updated:
            QualityFieldCount.objects.get_or_create(mission=mission, field=name)
            QualityFieldCount.objects.filter(mission=mission, field=name).update(
                present=F("present") + n
            )


@dataclass
class Failure:
    rule: str
    message: str
    expected: float
    actual: float


@dataclass
class Verdict:
    failures: list[Failure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def fields(self) -> dict[str, Any]:
        """What the FINALIZADO transition writes on the mission."""
        return {
            "needs_review": not self.passed,
            "review_failures": [asdict(f) for f in self.failures],
        }


def check(mission: Mission, rules: Rules | None = None) -> Verdict:
    rules = rules if rules is not None else rules_for(mission.domain)
    verdict = Verdict()
    if rules.empty:
        return verdict
    if rules.min_success_ratio is not None and mission.total_items:
        ratio = mission.done_items / mission.total_items
        if ratio < rules.min_success_ratio:
            verdict.failures.append(
                Failure(
                    "min_success_ratio",
                    f"taxa de sucesso {ratio:.0%} abaixo do mínimo "
                    f"{rules.min_success_ratio:.0%} ({mission.done_items} de "
                    f"{mission.total_items} itens)",
                    rules.min_success_ratio,
                    round(ratio, 4),
                )
            )
    if rules.required_fields:
        counts = dict(
            QualityFieldCount.objects.filter(mission=mission).values_list("field", "present")
        )
        records = counts.get(QualityFieldCount.RECORDS, 0)
        for name in rules.required_fields:
            pct = 100.0 * counts.get(name, 0) / records if records else 0.0
            if pct < rules.required_fields_min_pct:
                verdict.failures.append(
                    Failure(
                        "required_fields",
                        f"campo '{name}' presente em {pct:.0f}% dos registros "
                        f"(mínimo {rules.required_fields_min_pct:.0f}%)",
                        rules.required_fields_min_pct,
                        round(pct, 2),
                    )
                )
    if rules.min_records_pct_of_recent is not None:
        recent = (
            Mission.objects.filter(domain=mission.domain, status=MissionStatus.FINALIZADO)
            .exclude(pk=mission.pk)
            .order_by("-finalizado_at", "-id")
            .values_list("records_delivered", flat=True)[: rules.recent_missions]
        )
        history = list(recent)
        if history:
            avg = sum(history) / len(history)
            floor = avg * rules.min_records_pct_of_recent / 100
            if mission.records_delivered < floor:
                verdict.failures.append(
                    Failure(
                        "min_records_pct_of_recent",
                        f"{mission.records_delivered} registros, abaixo de "
                        f"{rules.min_records_pct_of_recent:.0f}% da média {avg:.0f} das "
                        f"últimas {len(history)} missões de {mission.domain}",
                        round(floor, 2),
                        mission.records_delivered,
                    )
                )
    return verdict


def evaluate(mission: Mission, now: dt.datetime) -> dict[str, Any]:
    """Fields for the FINALIZADO transition (MissionManager.finalize; the mission was
    just read, and its counters no longer move in ARMAZENANDO)."""
    return check(mission).fields()


def record_reviews(missions: list[Mission]) -> int:
    """The timeline entry and `quality.failed` event of each just-FINALIZADO mission
    that failed its quality gate (the caller's transaction, right after the
    transition; the instances carry the transition's fields). Returns how many."""
    flagged = [m for m in missions if m.needs_review]
    if not flagged:
        return 0
    MissionEvent.objects.bulk_create(
        MissionEvent(
            mission_id=m.pk,
            kind=MissionEvent.Kind.INFO,
            attempt=m.attempt,
            message=("Precisa de revisão: " + "; ".join(f["message"] for f in m.review_failures))[
                :2000
            ],
            data={"review_failures": m.review_failures},
            created_at=m.finalizado_at or timezone.now(),
        )
        for m in flagged
    )
    for m in flagged:
        events.publish("quality.failed", mission_id=m.pk)
    return len(flagged)


def mark_reviewed(mission: Mission) -> None:
    """An operator looked at it: clear the flag (the failed rules stay in the timeline)."""
    Mission.objects.filter(pk=mission.pk).update(needs_review=False)


__all__ = ["Rules", "Verdict", "check", "evaluate", "record_reviews", "tally_page"]
