"""Model signals that write the audit log: who created, changed (which fields) or
deleted configuration, users and tokens; logins and logouts.

Machine bookkeeping (health, counters, leases) is written with `.update()` and is
not audited; mission state changes have their own log (orchestrator.MissionEvent)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.http import HttpRequest

from audit.context import Actor, current_actor
from audit.log import record
from audit.models import AuditLog
from mission_control.clientip import client_ip

AUDITED = (
    "registry.Worker",
    "registry.Writer",
    "registry.Uploader",
    "registry.Proxy",
    "registry.SiteConfig",
    "registry.ConfigEntry",
    "orchestrator.RecurringMission",
    "auth.User",
    "auth.Group",
    "registry.ApiToken",
)
# Created and deleted are audited; their updates are machine work (transitions).
CREATE_DELETE_ONLY = ("orchestrator.Mission",)
# Changes that are bookkeeping, not decisions.
IGNORED_FIELDS = {"updated_at", "created_at", "last_login"}
_BEFORE = "_audit_before"


def _attnames(instance: models.Model, update_fields: Any) -> list[str]:
    names = [f.attname for f in instance._meta.concrete_fields if not f.primary_key]
    if update_fields:
        wanted = set(update_fields)
        names = [n for n in names if n in wanted or n.removesuffix("_id") in wanted]
    return names


def _field_name(instance: models.Model, attname: str) -> str:
    for f in instance._meta.concrete_fields:
        if f.attname == attname:
            return f.name
    return attname


def before_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if kwargs.get("raw") or instance._state.adding or instance.pk is None:
        return
    names = _attnames(instance, kwargs.get("update_fields"))
    old = sender._default_manager.filter(pk=instance.pk).values(*names).first()
    setattr(instance, _BEFORE, old)


def after_save(
    sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any
) -> None:
    if kwargs.get("raw"):
        return
    if created:
        record(AuditLog.Action.CREATE, instance)
        return
    old = instance.__dict__.pop(_BEFORE, None)
    if old is None:
        return
    changed = [
        _field_name(instance, name)
        for name, value in old.items()
        if getattr(instance, name) != value
    ]
    changed = [name for name in changed if name not in IGNORED_FIELDS]
    if changed:
        record(AuditLog.Action.UPDATE, instance, fields=changed)


def after_create(
    sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any
) -> None:
    if created and not kwargs.get("raw"):
        record(AuditLog.Action.CREATE, instance)


def after_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    record(AuditLog.Action.DELETE, instance)


def groups_changed(
    sender: Any, instance: models.Model, action: str, reverse: bool, **kwargs: Any
) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        record(AuditLog.Action.UPDATE, instance, fields=["groups" if not reverse else "user_set"])


def _login_actor(request: HttpRequest | None, name: str, user_id: int | None) -> Actor:
    ip = client_ip(request) if request is not None else None
    return Actor(name, user_id, ip or None)


def logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    actor = _login_actor(request, user.get_username(), user.pk)
    record(AuditLog.Action.LOGIN, user, actor=actor)


def logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(
            AuditLog.Action.LOGOUT, user, actor=_login_actor(request, user.get_username(), user.pk)
        )


def login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # `credentials` is already cleansed by Django; only the username is kept.
    username = str(credentials.get("username", ""))[:150]
    actor = _login_actor(request, username or "anonymous", None)
    record(AuditLog.Action.LOGIN_FAILED, actor=actor, data={"username": username})


def connect() -> None:
    for name in AUDITED:
        model = apps.get_model(name)
        uid = f"audit:{name}"
        pre_save.connect(before_save, sender=model, dispatch_uid=f"{uid}:pre")
        post_save.connect(after_save, sender=model, dispatch_uid=f"{uid}:post")
        post_delete.connect(after_delete, sender=model, dispatch_uid=f"{uid}:delete")
    for name in CREATE_DELETE_ONLY:
        model = apps.get_model(name)
        uid = f"audit:{name}"
        post_save.connect(after_create, sender=model, dispatch_uid=f"{uid}:post")
        post_delete.connect(after_delete, sender=model, dispatch_uid=f"{uid}:delete")
    m2m_changed.connect(
        groups_changed, sender=get_user_model().groups.through, dispatch_uid="audit:groups"
    )
    user_logged_in.connect(logged_in, dispatch_uid="audit:login")
    user_logged_out.connect(logged_out, dispatch_uid="audit:logout")
    user_login_failed.connect(login_failed, dispatch_uid="audit:login_failed")


__all__ = ["connect", "current_actor"]
