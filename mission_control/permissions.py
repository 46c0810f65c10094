"""Roles are Django groups: viewer (read), operator (missions, pause/resume), admin (all)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from rest_framework import permissions
from rest_framework.request import Request

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    if getattr(user, "is_superuser", False):
        return set(ROLES)
    cached = getattr(user, "_mc_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        cached = set()
        if ADMIN in names:
            cached = set(ROLES)
        elif OPERATOR in names:
            cached = {VIEWER, OPERATOR}
        elif VIEWER in names or getattr(user, "is_staff", False):
            cached = {VIEWER}
        user._mc_roles = cached  # type: ignore[attr-defined]
    return set(cached)


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    return role in user_roles(user)


class RolePermission(permissions.BasePermission):
    """Reads need `viewer`; writes need the view's `write_role` (default `admin`).

    A view may set ``action_roles = {"cancel": "operator", ...}`` to open single
    actions to a lower role.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        action = getattr(view, "action", None)
        role = getattr(view, "action_roles", {}).get(action)
        if role is None:
            role = (
                VIEWER
                if request.method in permissions.SAFE_METHODS
                else getattr(view, "write_role", ADMIN)
            )
        return has_role(request.user, role)


class ViewerRole(permissions.BasePermission):
    """Any role at all (viewer or above): the API schema and docs page."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and has_role(user, VIEWER))
