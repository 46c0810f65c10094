"""The request being served, so audit records (written from model signals, far from
the view) know who acted and from where."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from mission_control.clientip import client_ip

_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)

SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    name: str
    user_id: int | None
    ip: str | None

    @property
    def is_human(self) -> bool:
        return self.user_id is not None


def set_request(request: HttpRequest | None) -> object:
    return _request.set(request)


def reset(token: object) -> None:
    _request.reset(token)  # type: ignore[arg-type]


def current_actor() -> Actor:
    """Who is acting: the authenticated user of the current request, else the system.

    Read late on purpose: DRF authenticates tokens inside the view and writes the
    user back onto the Django request."""
    request = _request.get()
    if request is None:
        return Actor(SYSTEM, None, None)
    ip = client_ip(request)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Actor("anonymous", None, ip)
    return Actor(user.get_username(), user.pk, ip)


def current_user() -> Any:
    """The authenticated user of the current request, or None (system work)."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    if user is None or not user.is_authenticated:
        return None
    return user
