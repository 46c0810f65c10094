"""Mission and session states, transitions, checkpoints, error codes and the retry
policy. The only module that knows them; everything here is pure."""

from __future__ import annotations

import datetime as dt
import enum
import random
from dataclasses import dataclass

from django.db import models

from mission_control.backoff import capped_exponential_s


class MissionStatus(models.TextChoices):
    QUEUED = "QUEUED", "Na fila"
    ATRIBUIDO = "ATRIBUIDO", "Atribuído"
    EXTRAINDO = "EXTRAINDO", "Extraindo"
    ARMAZENANDO = "ARMAZENANDO", "Armazenando"
    FINALIZADO = "FINALIZADO", "Finalizado"
    ERRO = "ERRO", "Erro"
    CANCELADO = "CANCELADO", "Cancelado"


S = MissionStatus
TERMINAL: frozenset[str] = frozenset({S.FINALIZADO, S.ERRO, S.CANCELADO})
RUNNING: frozenset[str] = frozenset({S.ATRIBUIDO, S.EXTRAINDO, S.ARMAZENANDO})

TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.ATRIBUIDO, S.CANCELADO, S.ERRO}),
    S.ATRIBUIDO: frozenset({S.EXTRAINDO, S.ARMAZENANDO, S.QUEUED, S.ERRO, S.CANCELADO}),
    S.EXTRAINDO: frozenset({S.ARMAZENANDO, S.QUEUED, S.ERRO, S.CANCELADO}),
    S.ARMAZENANDO: frozenset({S.FINALIZADO, S.QUEUED, S.ERRO, S.CANCELADO}),
    S.FINALIZADO: frozenset(),
    # An operator may retry a mission that ended in error or was cancelled.
    S.ERRO: frozenset({S.QUEUED}),
    S.CANCELADO: frozenset({S.QUEUED}),
}

CHECKPOINTS: dict[str, str] = {
    S.ATRIBUIDO: "atribuido_at",
    S.EXTRAINDO: "extraindo_at",
    S.ARMAZENANDO: "armazenando_at",
    S.FINALIZADO: "finalizado_at",
}

CANCELLABLE: frozenset[str] = frozenset({S.QUEUED, *RUNNING})
RETRYABLE_BY_OPERATOR: frozenset[str] = frozenset({S.ERRO, S.CANCELADO})


def can_transition(src: str, dst: str) -> bool:
    return dst in TRANSITIONS.get(src, frozenset())


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pendente"
    ASSIGNED = "assigned", "Atribuído"
    DONE = "done", "Concluído"
    FAILED = "failed", "Falhou"


class SessionStatus(models.TextChoices):
    REQUESTED = "requested", "Solicitada"
    CREATING = "creating", "Criando"
    READY = "ready", "Pronta"
    BUSY = "busy", "Ocupada"
    STUCK = "stuck", "Travada"
    DISCONNECTED = "disconnected", "Desconectada"
    FAILED = "failed", "Falhou"
    CLOSING = "closing", "Encerrando"
    CLOSED = "closed", "Encerrada"


SESSION_ENDED: frozenset[str] = frozenset(
    {SessionStatus.STUCK, SessionStatus.DISCONNECTED, SessionStatus.FAILED, SessionStatus.CLOSED}
)
# Sessions that still hold (or are about to hold) a worker slot on the worker side.
SESSION_LIVE: frozenset[str] = frozenset(
    {
        SessionStatus.REQUESTED,
        SessionStatus.CREATING,
        SessionStatus.READY,
        SessionStatus.BUSY,
        SessionStatus.CLOSING,
    }
)


class ErrorCode(enum.StrEnum):
    # Sessions
    SESSION_OPEN_FAILED = "SESSION_OPEN_FAILED"
    SESSION_PROVIDER_ERROR = "SESSION_PROVIDER_ERROR"
    SESSION_STUCK = "SESSION_STUCK"
    SESSION_DISCONNECTED = "SESSION_DISCONNECTED"
    SESSION_FAILED = "SESSION_FAILED"
    SESSION_ROTATIONS_EXHAUSTED = "SESSION_ROTATIONS_EXHAUSTED"
    # Scraping (items and jobs)
    SCRAPE_BLOCKED = "SCRAPE_BLOCKED"
    SCRAPE_TIMEOUT = "SCRAPE_TIMEOUT"
    SCRAPE_PROXY_ERROR = "SCRAPE_PROXY_ERROR"
    SCRAPE_HTTP_ERROR = "SCRAPE_HTTP_ERROR"
    SCRAPE_DNS_ERROR = "SCRAPE_DNS_ERROR"
    SCRAPE_PARSE_ERROR = "SCRAPE_PARSE_ERROR"
    # robots.txt disallows the URL: not a proxy fault, never retried.
    SCRAPE_ROBOTS_DISALLOWED = "SCRAPE_ROBOTS_DISALLOWED"
    SCRAPE_JOB_REJECTED = "SCRAPE_JOB_REJECTED"
    SCRAPE_JOB_FAILED = "SCRAPE_JOB_FAILED"
    SCRAPE_ALL_ITEMS_FAILED = "SCRAPE_ALL_ITEMS_FAILED"
    # Writer
    WRITER_REJECTED = "WRITER_REJECTED"
    WRITER_COUNT_MISMATCH = "WRITER_COUNT_MISMATCH"
    WRITER_UNAVAILABLE = "WRITER_UNAVAILABLE"
    WRITER_NOT_CONFIGURED = "WRITER_NOT_CONFIGURED"
    # Allocation (reasons to wait, not failures)
    ALLOC_NO_WORKER = "ALLOC_NO_WORKER"
    ALLOC_NO_CAPACITY = "ALLOC_NO_CAPACITY"
    ALLOC_NO_PROXY = "ALLOC_NO_PROXY"
    ALLOC_NO_PROVIDER = "ALLOC_NO_PROVIDER"
    # ETL
    ETL_UNAVAILABLE = "ETL_UNAVAILABLE"
    ETL_REJECTED = "ETL_REJECTED"

    @property
    def recoverable(self) -> bool:
        return self not in _NOT_RECOVERABLE

    @property
    def group(self) -> str:
        return self.value.split("_", 1)[0]


_NOT_RECOVERABLE = frozenset(
    {
        ErrorCode.SCRAPE_DNS_ERROR,
        ErrorCode.SCRAPE_PARSE_ERROR,
        ErrorCode.SCRAPE_ROBOTS_DISALLOWED,
        ErrorCode.SCRAPE_ALL_ITEMS_FAILED,
        ErrorCode.WRITER_NOT_CONFIGURED,
        ErrorCode.ETL_REJECTED,
    }
)

ERROR_CODE_CHOICES = [(c.value, c.value) for c in ErrorCode]

# Worker result error codes (worker-api.md) → our item codes, and whether the item
# may go back to pending for another session.
ITEM_ERRORS: dict[str, tuple[ErrorCode, bool]] = {
    "blocked": (ErrorCode.SCRAPE_BLOCKED, True),
    "timeout": (ErrorCode.SCRAPE_TIMEOUT, True),
    "proxy_error": (ErrorCode.SCRAPE_PROXY_ERROR, True),
    "http_error": (ErrorCode.SCRAPE_HTTP_ERROR, True),
    "dns_error": (ErrorCode.SCRAPE_DNS_ERROR, False),
    "parse_error": (ErrorCode.SCRAPE_PARSE_ERROR, False),
    "robots_disallowed": (ErrorCode.SCRAPE_ROBOTS_DISALLOWED, False),
}
FINAL_HTTP_STATUSES = frozenset({404, 410})
# The one list of codes that blame the proxy (not the page) for a failed item: blocked,
# a proxy error or a timeout. They count against the proxy (`failure_count`, its health
# on the domain) and the item avoids that proxy next time.
PROXY_FAULT_CODES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.SCRAPE_BLOCKED, ErrorCode.SCRAPE_PROXY_ERROR, ErrorCode.SCRAPE_TIMEOUT}
)
# The same faults as the worker API names them (`result.error.code`).
PROXY_FAULT_WORKER_CODES: frozenset[str] = frozenset(
    worker for worker, (code, _) in ITEM_ERRORS.items() if code in PROXY_FAULT_CODES
)


@dataclass(frozen=True)
class ItemOutcome:
    code: ErrorCode
    retry: bool


def classify_item_error(
    worker_code: str | None, http_status: int | None, attempts: int, max_attempts: int
) -> ItemOutcome:
    """Decide what happens to an item whose result came back as an error.

    `attempts` counts the attempt that just failed.
    """
    code, retryable = ITEM_ERRORS.get(worker_code or "", (ErrorCode.SCRAPE_HTTP_ERROR, True))
    if code is ErrorCode.SCRAPE_HTTP_ERROR and http_status in FINAL_HTTP_STATUSES:
        retryable = False
    return ItemOutcome(code=code, retry=retryable and attempts < max_attempts)


@dataclass(frozen=True)
class RetryPolicy:
    """Mission-level retries: `max_retries` after the first attempt, with capped
    exponential backoff and proportional jitter."""

    max_retries: int = 2
    base_s: float = 30.0
    cap_s: float = 900.0
    jitter: float = 0.2

    def can_retry(self, attempt: int) -> bool:
        """`attempt` is 1-based: the first run is attempt 1."""
        return attempt <= self.max_retries

    def delay_s(self, attempt: int) -> float:
        """The capped exponential delay after attempt `attempt` (1-based), before any
        jitter: `base_s`, then doubling, never above `cap_s`. The one home of that
        arithmetic (clients, webhooks, worker opens and database reconnects use it)."""
        return capped_exponential_s(attempt, self.base_s, self.cap_s)

    def backoff_s(self, attempt: int, rand: float) -> float:
        """Delay before attempt `attempt + 1`; `rand` in [0, 1) supplies the jitter."""
        raw = self.delay_s(attempt)
        return max(0.0, raw * (1 - self.jitter + 2 * self.jitter * rand))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    next_attempt: int
    next_attempt_at: dt.datetime | None
    final_status: str


def decide_retry(
    policy: RetryPolicy,
    attempt: int,
    code: ErrorCode,
    now: dt.datetime,
    rng: random.Random | None = None,
) -> RetryDecision:
    """What a failed attempt leads to: QUEUED again with backoff, or ERRO."""
    if code.recoverable and policy.can_retry(attempt):
        rand = (rng or random.Random()).random()
        delay = policy.backoff_s(attempt, rand)
        return RetryDecision(
            True, attempt + 1, now + dt.timedelta(seconds=delay), MissionStatus.QUEUED
        )
    return RetryDecision(False, attempt, None, MissionStatus.ERRO)
