"""Quality gate rules as a site stores them (`SiteConfig.quality_rules`): parsing and
lookup per domain (the domain's own rules, else `*`'s). The registry owns them so its
API can validate them; `orchestrator.quality` checks missions against them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from registry.models import SiteConfig

logger = logging.getLogger(__name__)

RULE_KEYS = {
    "min_success_ratio",
    "required_fields",
    "required_fields_min_pct",
    "min_records_pct_of_recent",
    "recent_missions",
}


@dataclass(frozen=True)
class Rules:
    min_success_ratio: float | None = None
    required_fields: tuple[str, ...] = ()
    required_fields_min_pct: float = 100.0
    min_records_pct_of_recent: float | None = None
    recent_missions: int = 5

    @property
    def empty(self) -> bool:
        return (
            self.min_success_ratio is None
            and not self.required_fields
            and self.min_records_pct_of_recent is None
        )

    @classmethod
    def parse(cls, raw: Any) -> Rules:
        """Validate a `quality_rules` object; raises ValidationError naming the key."""
        if raw in (None, ""):
            return cls()
        if not isinstance(raw, dict):
            raise ValidationError("quality_rules must be an object.")
        unknown = set(raw) - RULE_KEYS
        if unknown:
            raise ValidationError(f"unknown quality rules: {', '.join(sorted(unknown))}")

        def number(key: str, lo: float, hi: float) -> float | None:
            value = raw.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"{key} must be a number.")
            if not lo <= value <= hi:
                raise ValidationError(f"{key} must be between {lo:g} and {hi:g}.")
            return float(value)

        fields = raw.get("required_fields")
        if fields is None:  # null means "not set"; 0, "" or {} are not lists
            fields = []
        if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
            raise ValidationError("required_fields must be a list of field names.")
        recent = raw.get("recent_missions", 5)
        if isinstance(recent, bool) or not isinstance(recent, int) or not 1 <= recent <= 100:
            raise ValidationError("recent_missions must be an integer between 1 and 100.")
        pct = number("required_fields_min_pct", 0, 100)
        return cls(
            min_success_ratio=number("min_success_ratio", 0, 1),
            required_fields=tuple(dict.fromkeys(fields)),
            required_fields_min_pct=100.0 if pct is None else pct,
            min_records_pct_of_recent=number("min_records_pct_of_recent", 0, 100),
            recent_missions=recent,
        )


def rules_for(domain: str) -> Rules:
    return _parse_rules(domain, SiteConfig.for_domain(domain))


def rules_for_domains(domains: Iterable[str]) -> dict[str, Rules]:
    """`rules_for` of every domain of a batch, in one query."""
    return {d: _parse_rules(d, site) for d, site in SiteConfig.for_domains(domains).items()}


def _parse_rules(domain: str, site: SiteConfig) -> Rules:
    try:
        return Rules.parse(site.quality_rules)
    except ValidationError:
        logger.warning("invalid quality_rules for %s; gate skipped", domain)
        return Rules()
