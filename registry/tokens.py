"""API tokens hashed at rest, expiring and revocable.

A key is `mc_` + 32 random bytes (URL-safe); it is returned once, when issued, and only
its SHA-256 is stored (a key this random needs no slow hash). Clients still send
`Authorization: Token <key>`. A token stops working when it expires
(API_TOKEN_TTL_DAYS, 0 = never), when it is revoked (DELETE /api/auth/token/, the admin
action) and when its user's password changes."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from audit.log import record
from audit.models import AuditLog
from registry.models import ApiToken

KEY_PREFIX = "mc_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def issue(user: User, *, now: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the key (never stored)."""
    now = now or timezone.now()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    days = settings.API_TOKEN_TTL_DAYS
    token = ApiToken.objects.create(
        user=user,
        digest=digest(key),
        prefix=key[:12],
        expires_at=now + dt.timedelta(days=days) if days > 0 else None,
    )
    return token, key


def revoke(tokens: QuerySet[ApiToken], *, now: dt.datetime | None = None) -> int:
    """Revokes the live tokens among `tokens` (compare-and-set on revoked_at), audited."""
    live = list(tokens.filter(revoked_at__isnull=True))
    count = ApiToken.objects.filter(pk__in=[t.pk for t in live], revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )
    for token in live:
        record(AuditLog.Action.UPDATE, token, fields=["revoked_at"])
    return count


def find_live(key: str, *, now: dt.datetime | None = None) -> ApiToken | None:
    now = now or timezone.now()
    token = ApiToken.objects.select_related("user").filter(digest=digest(key)).first()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    return token


class HashedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` checked against the stored hashes."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = find_live(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token


def presented_token(request: Request) -> ApiToken | None:
    auth = request.auth
    return auth if isinstance(auth, ApiToken) else None


def revoke_on_password_change(sender: type, instance: User, **kwargs: Any) -> None:
    """pre_save of auth.User: a changed password hash revokes every token of the user."""
    if instance.pk is None:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "password" not in update_fields:
        return
    old = User.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        revoke(ApiToken.objects.filter(user_id=instance.pk))
