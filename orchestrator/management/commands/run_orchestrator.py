"""Run the four managers (sessions, workers, missions, ETL outbox): in this process, or
split over several with `--processes` (`orchestrator.processes`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from mission_control import startup
from orchestrator import processes
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
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="Split the managers over this many processes (default "
            "ORCHESTRATOR_PROCESSES, 1); at most one per manager.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        managers = [m.strip() for m in options["managers"].split(",") if m.strip()]
        unknown = set(managers) - set(MANAGER_CLASSES)
        if unknown or not managers:
            raise CommandError(f"unknown managers: {', '.join(sorted(unknown)) or '(none)'}")
        n = options["processes"]
        n = settings.ORCHESTRATOR_PROCESSES if n is None else n
        if n < 1:
            raise CommandError("--processes must be at least 1")
        if n > 1 and len(managers) > 1 and not options["once"]:
            self.supervise(processes.partition(managers, n), options)
            return
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
            startup.freeze_startup_objects()
        self.stdout.write(f"orchestrator {orchestrator.name} running: {', '.join(managers)}")
        orchestrator.run(once=options["once"], max_seconds=options["max_seconds"])

    def supervise(self, groups: list[list[str]], options: dict[str, Any]) -> None:
        connection.close()  # the supervisor itself never uses the database
        # Each child's instance name must be unique: a configured one gets a suffix.
        options = {**options, "name": options["name"] or settings.ORCHESTRATOR_INSTANCE_NAME}
        commands = [processes.child_command(g, options, i) for i, g in enumerate(groups, 1)]
        supervisor = processes.Supervisor(commands, cwd=settings.BASE_DIR)
        supervisor.install_signal_handlers()
        supervisor.start()
        listed = "; ".join(",".join(g) for g in groups)
        self.stdout.write(f"orchestrator: {len(groups)} processes ({listed})")
        code = supervisor.wait()
        if code:
            sys.exit(128 - code if code < 0 else code)  # killed by a signal: 128 + signum
