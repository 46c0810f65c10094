"""Which browser provider a site may use (`SiteConfig.providers`) and which workers offer
it (`Worker.providers`, refreshed from their /health). Pure rules over rows already read,
plus one small query for the explainer; allocation calls these in one line each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.states import ErrorCode
from registry.models import HealthStatus, SiteConfig, Worker

ANY = "*"
DEFAULT_PROVIDER = "local"
BROWSERBASE = "browserbase"


def accepted(site: SiteConfig) -> list[str] | None:
    """The site's providers in order of preference; None when any provider will do."""
    wanted = [p for p in (site.providers or []) if p]
    if not wanted or ANY in wanted:
        return None
    return wanted


def offered(worker: Worker) -> list[str]:
    return list(worker.providers or [DEFAULT_PROVIDER])


def fits(worker: Worker, site: SiteConfig) -> bool:
    wanted = accepted(site)
    return wanted is None or any(p in offered(worker) for p in wanted)


def fitting(workers: Iterable[Worker], site: SiteConfig) -> list[Worker]:
    return [w for w in workers if fits(w, site)]


def pick(worker: Worker, site: SiteConfig) -> str:
    """The provider to ask `worker` for: the site's first choice it offers."""
    mine = offered(worker)
    for provider in accepted(site) or []:
        if provider in mine:
            return provider
    return mine[0]


def words(site: SiteConfig) -> str:
    return " ou ".join(accepted(site) or [ANY])


def shortfall(site: SiteConfig, pool: Sequence[Worker]) -> tuple[str, str]:
    """(wait code, pt-BR reason) when no free worker of `pool` fits the site."""
    if fitting(pool, site):
        return ErrorCode.ALLOC_NO_CAPACITY, f"workers com {words(site)} sem capacidade"
    return ErrorCode.ALLOC_NO_PROVIDER, f"nenhum worker disponível oferece {words(site)}"


def unavailable_reason(site: SiteConfig) -> str:
    """For the explainer: why no usable worker can run the site's provider, or ""."""
    if accepted(site) is None:
        return ""
    usable = Worker.objects.filter(enabled=True, draining=False).exclude(
        health_status=HealthStatus.OFFLINE
    )
    if any(fits(w, site) for w in usable.only("id", "providers")):
        return ""
    return f"nenhum worker oferece {words(site)}"
