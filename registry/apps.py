from __future__ import annotations

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registro de recursos"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.models import User
        from django.db.models.signals import pre_save

        from mission_control import extensions
        from registry import metrics, tokens

        extensions.register("metrics", metrics.collect)
        pre_save.connect(
            tokens.revoke_on_password_change, sender=User, dispatch_uid="token-password"
        )
