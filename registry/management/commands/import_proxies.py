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
            stream = file.open("rb")
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        with stream:
            size = file.stat().st_size
            if size > importers.max_bytes():
                raise CommandError(
                    f"{file} is {importers.streams.too_large(importers.max_bytes())}"
                )
            proxy_file = importers.ProxyFile.open(stream, file.name)
            try:
                checked = proxy_file.check()
                report_checked(self, checked, skip_invalid)
                summary = proxy_file.apply(progress=self.progress, total=checked.valid)
            except importers.FileRefused as exc:
                raise CommandError(f"{file}: {exc.message}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Proxies: {summary.created} created, {summary.updated} updated, "
                f"{checked.error_count} skipped."
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


def report_checked(command: BaseCommand, checked: importers.Checked, skip_invalid: bool) -> None:
    """`report` for a file read as a stream (errors counted, the first ones kept)."""
    for error in checked.errors[:100]:
        command.stderr.write(error.describe())
    if checked.error_count > 100:
        command.stderr.write(f"... and {checked.error_count - 100} more")
    if checked.error_count and not skip_invalid:
        raise CommandError(
            f"{checked.error_count} invalid entries; nothing imported (use --skip-invalid to "
            "import the rest)."
        )
    command.stdout.write(f"{checked.valid} valid entries to import.")
