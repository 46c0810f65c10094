from __future__ import annotations

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registro de recursos"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mission_control import extensions
        from registry import metrics

        extensions.register("metrics", metrics.collect)
