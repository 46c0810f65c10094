"""Run the four managers (sessions, workers, missions, ETL outbox) in one process."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from orchestrator.runner import MANAGER_CLASSES, Orchestrator, engine_connection_options


class Command(BaseCommand):
    help = (
        "Run the session, worker, mission and ETL managers in a loop (SIGTERM/SIGINT stop "
        "gracefully after the current tick; a second signal exits at once)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once", action="store_true", help="One tick of each manager, then exit."
        )
        parser.add_argument(
            "--managers",
            default=",".join(MANAGER_CLASSES),
            help="Comma-separated subset of: sessions,workers,missions,etl.",
        )
        parser.add_argument("--name", default="", help="Instance name (default host:pid:random).")
        parser.add_argument("--no-notify", action="store_true", help="Poll only; ignore NOTIFY.")
        parser.add_argument(
            "--max-seconds", type=float, default=None, help="Stop after this many seconds."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        managers = [m.strip() for m in options["managers"].split(",") if m.strip()]
        unknown = set(managers) - set(MANAGER_CLASSES)
        if unknown or not managers:
            raise CommandError(f"unknown managers: {', '.join(sorted(unknown)) or '(none)'}")
        if connection.vendor == "postgresql":
            connection.close()  # the manager threads' connections take these options
            db = settings.DATABASES["default"]
            db["OPTIONS"] = engine_connection_options(
                db.get("OPTIONS", {}), os.getpid(), settings.ORCHESTRATOR_IDLE_TX_TIMEOUT_S
            )
        orchestrator = Orchestrator(
            managers,
            name=options["name"] or settings.ORCHESTRATOR_INSTANCE_NAME or None,
            use_notify=not options["no_notify"],
        )
        if not options["once"]:
            orchestrator.install_signal_handlers()
        self.stdout.write(f"orchestrator {orchestrator.name} running: {', '.join(managers)}")
        orchestrator.run(once=options["once"], max_seconds=options["max_seconds"])
