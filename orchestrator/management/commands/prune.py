"""Delete events, finished items, ended sessions and settled webhook deliveries older
than their retention (config keys `retention_*_days`), in batches, with progress."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from orchestrator import retention


class Command(BaseCommand):
    help = "Prune rows past their retention, in batches (safe to stop and run again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be deleted."
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per batch.")
        parser.add_argument(
            "--only",
            action="append",
            choices=retention.TARGET_NAMES,
            help="Prune only this target (repeatable).",
        )
        parser.add_argument(
            "--max-batches", type=int, default=None, help="Stop each target after N batches."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["dry_run"]:
            for name, n in retention.count_due(now).items():
                if not options["only"] or name in options["only"]:
                    self.stdout.write(f"{name}: {n} would be deleted")
            return

        def progress(name: str, batch: int, total: int) -> None:
            self.stdout.write(f"{name}: batch of {batch} deleted ({total} so far)")
            self.stdout.flush()

        totals = retention.prune(
            now,
            batch_size=options["batch_size"],
            only=tuple(options["only"] or ()) or None,
            max_batches=options["max_batches"],
            progress=progress,
        )
        summary = ", ".join(f"{name} {n}" for name, n in totals.items())
        self.stdout.write(self.style.SUCCESS(f"pruned: {summary}"))
