"""What the orchestrator may use: services (workers, writers, uploaders), proxies,
per-domain proxy strategies and key-value configuration."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from mission_control.crypto import EncryptedTextField


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Desconhecido"
    OK = "ok", "Saudável"
    DEGRADED = "degraded", "Degradado"
    OFFLINE = "offline", "Offline"


class Service(models.Model):
    """An external HTTP service (worker, writer, uploader) with health and a breaker."""

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500)
    # Secret: encrypted at rest, write-only in the API, masked in admin and dashboard,
    # never logged.
    api_key = EncryptedTextField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    health_status = models.CharField(
        max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    version = models.CharField(max_length=50, blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Circuit breaker: while open, only probes are sent.
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key)

    def circuit_open(self, now: dt.datetime) -> bool:
        return self.circuit_open_until is not None and self.circuit_open_until > now


class WorkerProvider(models.TextChoices):
    LOCAL = "local", "Local"
    BROWSERBASE = "browserbase", "Browserbase"


class Worker(Service):
    providers = models.JSONField(default=list, blank=True)
    max_sessions = models.PositiveIntegerField(
        default=8, validators=[MinValueValidator(1), MaxValueValidator(10_000)]
    )
    draining = models.BooleanField(
        default=False, help_text="A draining worker keeps its sessions but gets no new ones."
    )
    # Counted rows: changed in the same transaction as the sessions they count.
    active_sessions = models.PositiveIntegerField(default=0)
    # What the worker itself said on its last /health.
    reported_active_sessions = models.PositiveIntegerField(null=True, blank=True)
    reported_max_sessions = models.PositiveIntegerField(null=True, blank=True)

    class Meta(Service.Meta):
        verbose_name = "worker"
        verbose_name_plural = "workers"

    def free_slots(self) -> int:
        return max(0, self.max_sessions - self.active_sessions)


class Writer(Service):
    is_default = models.BooleanField(default=False)
    max_batch_records = models.PositiveIntegerField(default=500)

    class Meta(Service.Meta):
        verbose_name = "writer"
        verbose_name_plural = "writers"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_writer"
            )
        ]

    @classmethod
    def default_q(cls) -> models.QuerySet[Writer]:
        """The writer a mission without its own writes to: the default one, if enabled.
        The one home of that rule (at most one row, by `one_default_writer`)."""
        return cls.objects.filter(is_default=True, enabled=True)

    @classmethod
    def default(cls) -> Writer | None:
        return cls.default_q().first()

    def other_defaults(self) -> models.QuerySet[Writer]:
        """Every other writer marked default (enabled or not): the rows that must be
        unset, or refused, before this one becomes the default."""
        return Writer.objects.filter(is_default=True).exclude(pk=self.pk)


class Uploader(Service):
    # Uploaders are temporarily disabled in the seed: new rows start disabled.
    enabled = models.BooleanField(default=False)

    class Meta(Service.Meta):
        verbose_name = "uploader"
        verbose_name_plural = "uploaders"


class ProxyType(models.TextChoices):
    DATACENTER = "datacenter", "Datacenter"
    RESIDENTIAL = "residential", "Residencial"
    MOBILE = "mobile", "Móvel"
    ISP = "isp", "ISP"
    # Browserbase's own managed residential proxies: no credentials of ours; the country
    # is asked of Browserbase. Only a `browserbase` session can use it.
    BROWSERBASE = "browserbase", "Browserbase (gerenciado)"


class ProxyScheme(models.TextChoices):
    HTTP = "http", "HTTP"
    HTTPS = "https", "HTTPS"
    SOCKS5 = "socks5", "SOCKS5"


class ProxyStatus(models.TextChoices):
    AVAILABLE = "available", "Disponível"
    COOLDOWN = "cooldown", "Em resfriamento"
    BANNED = "banned", "Banido"
    DISABLED = "disabled", "Desativado"


class Proxy(models.Model):
    external_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=16, choices=ProxyType.choices)
    scheme = models.CharField(max_length=8, choices=ProxyScheme.choices, default=ProxyScheme.HTTP)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    username = models.CharField(max_length=255, blank=True, default="")
    # Secret: encrypted at rest, write-only in the API, masked everywhere, never logged.
    password = EncryptedTextField(max_length=255, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166 alpha-2")
    provider = models.CharField(max_length=100, blank=True, default="")
    enabled = models.BooleanField(default=True)
    status = models.CharField(
        max_length=16, choices=ProxyStatus.choices, default=ProxyStatus.AVAILABLE
    )
    max_sessions = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    active_sessions = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # Geo seen by the last connection test (registry/geo.py): the exit IP and the
    # country the check URL reported; a mismatch with `country` is flagged.
    exit_ip = models.GenericIPAddressField(null=True, blank=True)
    exit_country = models.CharField(max_length=2, blank=True, default="")
    geo_checked_at = models.DateTimeField(null=True, blank=True)
    geo_mismatch = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "proxy"
        verbose_name_plural = "proxies"
        ordering = ["external_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(port__gte=1) & Q(port__lte=65535), name="proxy_port_range"
            ),
        ]
        indexes = [
            # allocation.claim_proxies: available proxies of a type, least recently used.
            models.Index(
                fields=["type", "country", "last_used_at"],
                name="proxy_alloc_idx",
                condition=Q(enabled=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.type}, {self.country or '--'})"

    def url(self, with_credentials: bool = True) -> str:
        auth = ""
        if with_credentials and self.username:
            auth = quote(self.username, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"

    @property
    def masked_url(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    @property
    def geo_verified(self) -> bool:
        """The last connection test saw this proxy exit in its declared country."""
        return bool(
            self.geo_checked_at
            and not self.geo_mismatch
            and self.exit_country
            and self.exit_country == self.country
        )

    def start_cooldown(self, now: dt.datetime, seconds: int, reason: str) -> None:
        """Rest the proxy after a failure; it becomes allocatable again after `seconds`."""
        Proxy.objects.filter(pk=self.pk).update(
            status=ProxyStatus.COOLDOWN,
            cooldown_until=now + dt.timedelta(seconds=seconds),
            failure_count=F("failure_count") + 1,
            last_error=reason[:2000],
        )


class Engine(models.TextChoices):
    HTTP = "http", "HTTP"
    BROWSER = "browser", "Navegador"


DEFAULT_DOMAIN = "*"


def normalize_domain(value: str) -> str:
    value = (value or "").strip().lower().rstrip(".")
    if value.startswith("www."):
        value = value[4:]
    return value


class SiteConfig(models.Model):
    """Proxy strategy and limits for one domain; `*` is the default for all others.

    Every setting is resolved field by field (`resolve_rules`): a null (empty) field
    inherits from the parent domain's rule, then from `*`, then `RULE_DEFAULTS`. An
    explicit empty list (`[]`: any proxy type, any country) is a value, not "inherit"."""

    domain = models.CharField(max_length=253, unique=True)
    # Null on a stored row means "inherit". The engine reads resolved rules
    # (`for_domains`), where every setting has a value: that is how they are typed.
    proxy_types = models.JSONField(
        null=True, blank=True, default=None, help_text="Proxy types allowed; empty inherits."
    )
    countries = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text="Allowed proxy countries ([] = any); empty inherits.",
    )
    blocked_proxies = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text="External ids of proxies never used for this domain; empty inherits.",
    )
    max_sessions: models.PositiveIntegerField[int | None, int] = models.PositiveIntegerField(  # type: ignore[misc]
        null=True,
        blank=True,
        default=None,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Sessions per mission; empty inherits.",
    )
    items_per_job: models.PositiveIntegerField[int | None, int] = models.PositiveIntegerField(  # type: ignore[misc]
        null=True,
        blank=True,
        default=None,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Items per job; empty inherits.",
    )
    job_timeout_s: models.PositiveIntegerField[int | None, int] = models.PositiveIntegerField(  # type: ignore[misc]
        null=True, blank=True, default=None, help_text="Empty inherits."
    )
    session_timeout_s: models.PositiveIntegerField[int | None, int] = models.PositiveIntegerField(  # type: ignore[misc]
        null=True, blank=True, default=None, help_text="Empty inherits."
    )
    engine = models.CharField(
        max_length=10, choices=Engine.choices, blank=True, default="", help_text="Empty inherits."
    )
    # Browser providers this site may use, first choice first (e.g. ["browserbase"] for
    # a site that needs a real browser elsewhere); [] or ["*"] allows any.
    providers = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text='Provedores aceitos, em ordem; [] ou ["*"] = qualquer; vazio herda.',
    )
    selectors = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text='CSS selectors to extract, e.g. {"price": ".price"}; empty inherits.',
    )
    # Quality gate before FINALIZADO (orchestrator/quality.py), e.g. {"min_success_ratio":
    # 0.9, "required_fields": ["price"], "required_fields_min_pct": 95,
    # "min_records_pct_of_recent": 50, "recent_missions": 5}; {} = no gate.
    quality_rules = models.JSONField(
        null=True, blank=True, default=None, help_text="Quality gate rules; empty inherits."
    )
    # Only proxies whose exit country a connection test confirmed (registry/geo.py).
    require_verified_geo = models.BooleanField(
        null=True,
        blank=True,
        default=None,
        help_text="Use only proxies whose country a connection test verified; empty inherits.",
    )
    # Load control for the whole domain across every mission (`for_domains` resolves
    # it; registry/site_rules.py turns it into job options). Null means "inherit": from
    # the parent domain's rule, then from `*`, then the code default (`RULE_DEFAULTS`).
    max_concurrent_sessions = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Live sessions on this domain across all missions; empty inherits.",
    )
    min_delay_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(600_000)],
        help_text="Minimum pause between two requests of one session (ms); empty inherits.",
    )
    max_requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Requests per minute to this domain, all sessions together; empty inherits.",
    )
    respect_robots = models.BooleanField(
        null=True, blank=True, help_text="Honour robots.txt and Crawl-delay; empty inherits."
    )
    user_agent = models.CharField(
        max_length=500, blank=True, default="", help_text="User-Agent header; empty inherits."
    )
    headers = models.JSONField(
        null=True, blank=True, help_text='Extra request headers, e.g. {"Accept-Language": "pt-BR"}.'
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "estratégia de proxy"
        verbose_name_plural = "estratégias de proxy"
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.domain != DEFAULT_DOMAIN:
            self.domain = normalize_domain(self.domain)
        if self.countries is not None:
            self.countries = sorted({c.upper() for c in self.countries})
        super().save(*args, **kwargs)

    @classmethod
    def for_domain(cls, domain: str) -> SiteConfig:
        """The config of `domain`, resolved (`for_domains`)."""
        return cls.for_domains([domain])[domain]

    @classmethod
    def for_domains(cls, domains: Iterable[str]) -> dict[str, SiteConfig]:
        """The one site-config lookup: each domain (keyed as given) gets its rule
        resolved field by field: its own row, else its parent domain's, else `*`'s, else
        the code default (`resolve_rules`); one query for the batch.

        A disabled strategy (`enabled=False`) is set aside: its domain falls back to the
        next rule up (and a disabled `*` to the defaults). Allocation, the explainer and
        the quality gate all read it here, so they agree."""
        wanted = {d: normalize_domain(d) for d in domains}
        if not wanted:
            return {}
        resolved = resolve_rules(wanted.values())
        return {d: resolved[n] for d, n in wanted.items()}


# --- Site rules resolved field by field (the one home of the lookup; `registry.site_rules`
# says what a resolved rule means) ---

# Field -> value when no rule in the chain sets it.
RULE_DEFAULTS: dict[str, Any] = {
    "proxy_types": [],
    "countries": [],
    "blocked_proxies": [],
    "max_sessions": 4,
    "items_per_job": 50,
    "job_timeout_s": 60,
    "session_timeout_s": 900,
    "engine": Engine.HTTP.value,
    "providers": [],
    "selectors": {},
    "quality_rules": {},
    "require_verified_geo": False,
    "max_concurrent_sessions": None,  # no domain-wide cap
    "min_delay_ms": 0,
    "max_requests_per_minute": None,  # no per-minute budget
    "respect_robots": True,
    "user_agent": "",
    "headers": {},
}
RULE_INHERITED = tuple(RULE_DEFAULTS)
# Values a resolved rule may share with its source (immutable); lists and dicts are
# copied, so a caller changing its rule never changes a row's or the defaults.
_SHARED_OK = frozenset({str, int, float, bool, type(None)})
RULE_CODE_DEFAULT = "padrão"


def rule_chain(domain: str) -> list[str]:
    """The rule names consulted for `domain`, most specific first:
    `a.shop.example.com`, `shop.example.com`, `example.com`, `*` (never a bare TLD)."""
    name = normalize_domain(domain)
    if name == DEFAULT_DOMAIN or not name:
        return [DEFAULT_DOMAIN]
    labels = name.split(".")
    names = [".".join(labels[i:]) for i in range(max(1, len(labels) - 1))]
    return [*names, DEFAULT_DOMAIN]


def resolve_rules(domains: Iterable[str]) -> dict[str, SiteConfig]:
    """The resolved rule of each domain (keyed by its normalized name), in one query."""
    wanted = {normalize_domain(d) for d in domains}
    chains = {d: rule_chain(d) for d in wanted}
    names = {n for c in chains.values() for n in c}
    rows = {c.domain: c for c in SiteConfig.objects.filter(domain__in=names, enabled=True)}
    return {d: resolve_rule_from_rows(d, rows, chains[d]) for d in wanted}


def resolve_rule_from_rows(
    domain: str, rows: dict[str, SiteConfig], names: list[str] | None = None
) -> SiteConfig:
    """`resolve` for one domain given the rule rows by name (pure: no query)."""
    found = [rows[n] for n in (names or rule_chain(domain)) if n in rows]
    base = found[0] if found else SiteConfig(domain=DEFAULT_DOMAIN)
    resolved = copy.copy(base)
    sources: dict[str, str] = {}
    for name in RULE_INHERITED:
        source = next((r for r in found if getattr(r, name) not in (None, "")), None)
        value = getattr(source, name) if source else RULE_DEFAULTS[name]
        setattr(resolved, name, value if type(value) in _SHARED_OK else copy.deepcopy(value))
        sources[name] = source.domain if source else RULE_CODE_DEFAULT
    # The resolved copy is the rule *of* `domain` (its proxy rules then match the
    # mission's items in the distributor); where it came from is `rule_domain`.
    resolved.domain = normalize_domain(domain) or DEFAULT_DOMAIN
    resolved.rule_domain = base.domain if found else RULE_CODE_DEFAULT  # type: ignore[attr-defined]
    resolved.sources = sources  # type: ignore[attr-defined]
    return resolved


class ConfigEntry(models.Model):
    """A stored override of a typed config key; defaults live in `registry.config`."""

    key = models.CharField(max_length=100, primary_key=True)
    value = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "configuração"
        verbose_name_plural = "configurações"
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}"


class ApiToken(models.Model):
    """An API token. Only the SHA-256 of the key is stored (the key is shown once, when
    issued); it expires (API_TOKEN_TTL_DAYS) and is revoked on logout, by an admin,
    or when its user's password changes. See registry.tokens."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        verbose_name="usuário",
    )
    digest = models.CharField("hash", max_length=64, unique=True, editable=False)
    prefix = models.CharField("prefixo", max_length=12, editable=False)
    created_at = models.DateTimeField("criado em", auto_now_add=True)
    expires_at = models.DateTimeField("expira em", null=True, blank=True)
    revoked_at = models.DateTimeField("revogado em", null=True, blank=True)

    class Meta:
        verbose_name = "token de API"
        verbose_name_plural = "tokens de API"
        indexes = [models.Index(fields=["user", "revoked_at"], name="apitoken_user_live_idx")]

    def __str__(self) -> str:
        return f"{self.prefix}… (usuário #{self.user_id})"
