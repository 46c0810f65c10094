"""What a resolved site rule means: the event record, the words, the job options.

The resolution itself has one home, beside the model: `SiteConfig.for_domains` in
`registry.models` (with `rule_chain`, `resolve_rules`, `RULE_DEFAULTS`). A domain's rule
is its own `SiteConfig` row, else its parent domain's (`shop.example.com` falls back to
`example.com`), else `*`'s. The load-control fields (`RULE_INHERITED`) are nullable: a
null falls back, field by field, to the next rule up the chain, then to `RULE_DEFAULTS`
(an empty `user_agent` inherits too). The resolved config is an unsaved copy carrying
where each value came from (`rule_domain`, `sources`), so a mission can record which
rule applied.
"""

from __future__ import annotations

import math
import re
from typing import Any

from registry.models import SiteConfig


def rule_of(site: SiteConfig) -> dict[str, Any]:
    """What an ATRIBUIDO event records about the rule that applied."""
    return {
        "rule": getattr(site, "rule_domain", site.domain),
        "inherited": dict(getattr(site, "sources", {})),
        "max_concurrent_sessions": site.max_concurrent_sessions,
        "min_delay_ms": site.min_delay_ms,
        "max_requests_per_minute": site.max_requests_per_minute,
        "respect_robots": site.respect_robots,
    }


def domain_cap(site: SiteConfig) -> int | None:
    """Live sessions allowed on the domain across every mission, worker and orchestrator
    process (the slot rows of orchestrator/domain_slots.py enforce it): the rule's
    `max_concurrent_sessions`; without one, a per-minute budget implies a cap of the
    rule's `max_sessions`, because the budget is divided between the sessions through
    their pace (`job_options`) and so their number must be bounded domain-wide, not
    per mission. None: no cap."""
    if site.max_concurrent_sessions:
        return int(site.max_concurrent_sessions)
    if site.max_requests_per_minute:
        return int(site.max_sessions or 1)
    return None


def describe(site: SiteConfig) -> str:
    """pt-BR, e.g. "regra example.com (limite do domínio herdado de *)"."""
    rule = getattr(site, "rule_domain", site.domain)
    sources = getattr(site, "sources", {})
    text = f"regra {rule}"
    if not site.max_concurrent_sessions and site.max_requests_per_minute:
        return f"{text} (limite derivado de {site.max_requests_per_minute} requisições/min)"
    cap_from = sources.get("max_concurrent_sessions", rule)
    if cap_from != rule:
        text += f" (limite do domínio herdado de {cap_from})"
    return text


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


def clean_headers(value: Any) -> dict[str, str] | None:
    """Validate extra request headers: None (inherit) or `{"Name": "value"}` of at most
    30 entries, token names, values without control characters. Raises ValueError."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 30:
        raise ValueError('must be an object of at most 30 headers, e.g. {"Accept": "*/*"}.')
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}.")
        if not isinstance(text, str) or len(text) > 2000 or any(ord(c) < 32 for c in text):
            raise ValueError(f"invalid value for header {name!r}.")
    return dict(value)


def job_options(site: SiteConfig) -> dict[str, Any]:
    """The worker-api v1.1 job options of a resolved rule.

    `delay_ms` is the larger of `min_delay_ms` and the spacing that keeps the domain
    within `max_requests_per_minute` when every session it may have runs at once
    (`domain_cap`: at most that many live sessions on the domain, across missions and
    orchestrator processes): the budget is shared by the sessions through their pace,
    without the worker needing to know about the others."""
    delay = site.min_delay_ms or 0
    if site.max_requests_per_minute:
        sessions = domain_cap(site) or 1
        delay = max(delay, math.ceil(60_000 * sessions / site.max_requests_per_minute))
    headers = dict(site.headers or {})
    if site.user_agent:
        headers["User-Agent"] = site.user_agent
    return {
        "delay_ms": delay,
        "respect_robots": site.respect_robots is not False,
        "headers": headers,
    }
