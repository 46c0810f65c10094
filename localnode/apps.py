from __future__ import annotations

from django.apps import AppConfig


class LocalnodeConfig(AppConfig):
    name = "localnode"
    default_auto_field = "django.db.models.BigAutoField"
