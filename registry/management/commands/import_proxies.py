"""manage.py import_proxies FILE [--skip-invalid]: upsert proxies from proxies.json or CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry import importers


class Command(BaseCommand):
    help = "Import proxies (upsert by id) from a proxies.json array or a CSV file. " + (
        "CSV header: " + ",".join(importers.CSV_COLUMNS)
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="proxies.json or a .csv file")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid entries, skip the bad."
        )

    def handle(self, *args: Any, file: Path, skip_invalid: bool, **options: Any) -> None:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            parsed = importers.parse_proxies_text(text, file.name)
        except ValueError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}") from None
        report(self, parsed, skip_invalid)
        summary = importers.apply_proxies(parsed.rows, progress=self.progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"Proxies: {summary.created} created, {summary.updated} updated, "
                f"{len(parsed.errors)} skipped."
            )
        )

    def progress(self, done: int, total: int) -> None:
        self.stdout.write(f"  {done}/{total}")


def report(command: BaseCommand, parsed: importers.Parsed, skip_invalid: bool) -> None:
    """Print the bad entries; stop (nothing imported) unless told to skip them."""
    for error in parsed.errors[:100]:
        command.stderr.write(error.describe())
    if len(parsed.errors) > 100:
        command.stderr.write(f"... and {len(parsed.errors) - 100} more")
    if parsed.errors and not skip_invalid:
        raise CommandError(
            f"{len(parsed.errors)} invalid entries; nothing imported (use --skip-invalid to "
            "import the rest)."
        )
    command.stdout.write(f"{len(parsed.rows)} valid entries to import.")
