from __future__ import annotations

from django.apps import AppConfig


class LocalnodeConfig(AppConfig):
    name = "localnode"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from localnode import demo, export, uploader_api
        from mission_control import extensions

        extensions.register("demo_urls", demo.demo_urls)
        extensions.register("demo_private_urls", demo.private_urls)
        extensions.register("demo_engine", demo.engine)
        extensions.register("mission_export_jsonl", export.export_jsonl)
        extensions.register("prune_uploads", uploader_api.prune_uploads)
