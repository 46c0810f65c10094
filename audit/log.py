"""Writing audit records. Callers pass names and outcomes, never secret values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.utils import timezone

from audit.context import Actor, current_actor
from audit.models import AuditLog


def label(model: type[models.Model] | models.Model) -> str:
    return model._meta.label_lower


def describe(obj: models.Model) -> str:
    """A display name that never is a secret (an ApiToken's string is its prefix)."""
    return str(obj)[:200]


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    fields: Iterable[str] = (),
    data: dict[str, Any] | None = None,
    actor: Actor | None = None,
    object_repr: str | None = None,
) -> AuditLog:
    who = actor or current_actor()
    return AuditLog.objects.create(
        created_at=timezone.now(),
        actor=who.name[:150],
        actor_id=who.user_id,
        ip=who.ip,
        action=action,
        model=label(obj) if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=object_repr if object_repr is not None else (describe(obj) if obj else ""),
        fields=sorted(set(fields)),
        data=data or {},
    )


def record_updates(queryset: models.QuerySet[Any], fields: Iterable[str]) -> int:
    """Audit a bulk `.update()` (it fires no signals): one UPDATE row per object, listing
    the changed field names. Call it before or after the update, in its transaction."""
    who = current_actor()
    now = timezone.now()
    names = sorted(set(fields))
    rows = [
        AuditLog(
            created_at=now,
            actor=who.name[:150],
            actor_id=who.user_id,
            ip=who.ip,
            action=AuditLog.Action.UPDATE,
            model=label(obj),
            object_id=str(obj.pk),
            object_repr=describe(obj),
            fields=names,
            data={"bulk": True},
        )
        for obj in queryset
    ]
    AuditLog.objects.bulk_create(rows, batch_size=500)
    return len(rows)
