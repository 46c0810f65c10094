"""manage.py import_proxy_strategies FILE [--skip-invalid]: upsert site configs by domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry import importers
from registry.management.commands.import_proxies import report


class Command(BaseCommand):
    help = (
        'Import proxy strategies from proxy-strategies.json ({"default": ..., "domains": ...}); '
        "`default` becomes the `*` site config and `www.` is dropped from domains."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="proxy-strategies.json")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid entries, skip the bad."
        )

    def handle(self, *args: Any, file: Path, skip_invalid: bool, **options: Any) -> None:
        try:
            data = json.loads(file.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        parsed = importers.parse_strategies(data)
        report(self, parsed.errors, len(parsed.errors), len(parsed.rows), skip_invalid)
        summary = importers.apply_strategies(parsed.rows, progress=self.progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"Site configs: {summary.created} created, {summary.updated} updated, "
                f"{len(parsed.errors)} skipped."
            )
        )

    def progress(self, done: int, total: int) -> None:
        self.stdout.write(f"  {done}/{total}")
