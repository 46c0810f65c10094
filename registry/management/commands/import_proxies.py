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
                report(self, checked.errors, checked.error_count, checked.valid, skip_invalid)
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


def report(
    command: BaseCommand,
    errors: list[importers.EntryError],
    error_count: int,
    valid: int,
    skip_invalid: bool,
) -> None:
    """Print the first bad entries (`errors`, of `error_count`); stop (nothing imported)
    unless told to skip them."""
    for error in errors[:100]:
        command.stderr.write(error.describe())
    if error_count > 100:
        command.stderr.write(f"... and {error_count - 100} more")
    if error_count and not skip_invalid:
        raise CommandError(
            f"{error_count} invalid entries; nothing imported (use --skip-invalid to "
            "import the rest)."
        )
    command.stdout.write(f"{valid} valid entries to import.")
