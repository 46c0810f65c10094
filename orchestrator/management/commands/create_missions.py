"""manage.py create_missions FILE: queue many missions from a TXT, CSV or JSON file.

- ``.txt``: one URL per line (``#`` comments and blank lines skipped). The URLs become
  one mission per domain (``--group-by domain``, the default) or missions of at most
  ``--chunk`` URLs each (``--group-by chunk``). Names: ``--name`` plus the domain or
  the chunk number.
- ``.csv``: a header with ``name`` and ``url`` (optional ``priority``, ``domain``,
  ``etl_run``); the rows of one name make one mission, in file order.
- ``.json``: a list of ``{"name", "urls", "priority"?, "domain"?, "etl_run"?}`` (or an
  object with that list under ``"missions"``).

A mission with a domain and no URLs resumes the latest unfinished ETL run of that
domain; ``etl_run`` (a run id, or ``"latest"``) names the run. The same rules as the
API (docs/contracts/etl-api.md): the run's pending items become the URLs, refused when
no live mission may take it (owned by a live mission, finished, none, ETL down).

The whole file is read and every mission validated before the first is created, so a
bad file creates nothing (unless ``--skip-invalid``). Each mission is then created in
its own transaction through ``orchestrator.actions.create_mission``, with progress.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator import actions, etl_outbox
from registry.models import Writer, normalize_domain

FORMATS = ("txt", "csv", "json")
ETL_RUN = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")  # as the API's `etl_run`


@dataclass
class Spec:
    """One mission to create, as read from the file."""

    name: str
    urls: list[str] = field(default_factory=list)
    priority: int = 0
    domain: str = ""
    etl_run: str = ""  # a run id or "latest": resume it (no URLs needed)
    where: str = ""  # "line 12", "mission 3": for error messages

    @property
    def resumes(self) -> bool:
        return etl_outbox.wants_resume(self.urls, self.etl_run or None)


class Command(BaseCommand):
    help = (
        "Queue missions in bulk from a file: .txt (one URL per line, grouped per domain "
        "or in chunks), .csv (name,url[,priority,domain]; rows of one name make one "
        'mission) or .json ([{"name", "urls", "priority", "domain"}]). Validates the whole '
        "file first; prints progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="a .txt, .csv or .json file ('-' = stdin)")
        parser.add_argument(
            "--format", choices=FORMATS, default=None, help="Override the file-name extension."
        )
        parser.add_argument(
            "--name", default="", help="Mission name (prefix) for a .txt file (default: its name)."
        )
        parser.add_argument(
            "--group-by",
            choices=("domain", "chunk"),
            default="domain",
            help="How a .txt file's URLs become missions (default: domain).",
        )
        parser.add_argument(
            "--chunk",
            type=int,
            default=1000,
            help="URLs per mission with --group-by chunk (default: 1000).",
        )
        parser.add_argument(
            "--priority", type=int, default=None, help="Priority of every mission (overrides)."
        )
        parser.add_argument("--writer", default="", help="Writer name (default: the default one).")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Create the valid missions, skip the bad."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Validate and report; create nothing."
        )
        parser.add_argument(
            "--progress-every",
            type=int,
            default=100,
            help="Print progress every N missions (default: 100).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        kind = options["format"] or path.suffix.lower().lstrip(".")
        if kind not in FORMATS:
            raise CommandError(f"Unknown format {kind!r}: use .txt, .csv or .json (or --format).")
        if options["chunk"] < 1 or options["progress_every"] < 1:
            raise CommandError("--chunk and --progress-every must be at least 1.")
        text = self._read(path)
        try:
            if kind == "txt":
                name = options["name"] or (path.stem if str(path) != "-" else "Importação")
                specs = from_txt(text, name, options["group_by"], options["chunk"])
            elif kind == "csv":
                specs = from_csv(text)
            else:
                specs = from_json(text)
        except ValueError as exc:
            raise CommandError(f"{path}: {exc}") from None
        if not specs:
            raise CommandError(f"{path}: no missions in the file.")
        if options["priority"] is not None:
            for spec in specs:
                spec.priority = options["priority"]
        writer = self._writer(options["writer"])

        valid, errors = validate(specs)
        for error in errors[:100]:
            self.stderr.write(error)
        if len(errors) > 100:
            self.stderr.write(f"... and {len(errors) - 100} more")
        if errors and not options["skip_invalid"]:
            raise CommandError(
                f"{len(errors)} invalid missions; nothing created (use --skip-invalid to "
                "create the rest)."
            )
        total_urls = sum(len(s.urls) for s in valid)
        resuming = sum(1 for s in valid if s.resumes)
        self.stdout.write(
            f"{len(valid)} missions ({total_urls} URLs"
            + (f"; {resuming} resuming an ETL run" if resuming else "")
            + ") to create."
        )
        if options["dry_run"]:
            self.stdout.write(self.style.SUCCESS("Dry run: nothing created."))
            return

        every = options["progress_every"]
        first_id = last_id = None
        urls_done = 0
        for done, spec in enumerate(valid, start=1):
            try:
                mission = actions.create_mission(
                    name=spec.name,
                    urls=spec.urls,
                    domain=spec.domain,
                    etl_run=spec.etl_run or None,
                    priority=spec.priority,
                    writer=writer,
                )
            except etl_outbox.EtlRefused as exc:
                raise CommandError(
                    f"{spec.where or spec.name}: {exc.message} ({done - 1} missions created "
                    "before it)."
                ) from None
            first_id = first_id or mission.pk
            last_id = mission.pk
            urls_done += mission.total_items
            if done % every == 0 or done == len(valid):
                self.stdout.write(f"  {done}/{len(valid)} missions, {urls_done} URLs")
        self.stdout.write(
            self.style.SUCCESS(
                f"Missions: {len(valid)} created (ids {first_id}..{last_id}), "
                f"{len(errors)} skipped."
            )
        )

    def _read(self, path: Path) -> str:
        if str(path) == "-":
            return sys.stdin.read()
        try:
            return path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from None

    @staticmethod
    def _writer(name: str) -> Writer | None:
        if not name:
            return None
        writer = Writer.objects.filter(name=name).first()
        if writer is None:
            raise CommandError(f"No writer named {name!r}.")
        return writer


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def from_txt(text: str, name: str, group_by: str, chunk: int) -> list[Spec]:
    urls = [line for _, line in _lines(text)]
    if group_by == "chunk":
        parts = [urls[i : i + chunk] for i in range(0, len(urls), chunk)]
        return [
            Spec(name=f"{name} {n}/{len(parts)}" if len(parts) > 1 else name, urls=part)
            for n, part in enumerate(parts, start=1)
        ]
    by_domain: dict[str, Spec] = {}
    for url in urls:
        domain = _domain(url)
        spec = by_domain.setdefault(domain, Spec(name=f"{name}: {domain or '?'}"))
        spec.urls.append(url)
    return list(by_domain.values())


def from_csv(text: str) -> list[Spec]:
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    if not {"name", "url"} <= columns:
        raise ValueError("the CSV header must include name and url")
    specs: dict[str, Spec] = {}
    for row in reader:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        name = row.get("name", "")
        spec = specs.get(name)
        if spec is None:
            spec = specs[name] = Spec(
                name=name,
                domain=row.get("domain", ""),
                etl_run=row.get("etl_run", ""),
                where=f"line {reader.line_num}",
            )
            spec.priority = _int(row.get("priority") or "0", f"line {reader.line_num}: priority")
        if row.get("url") or not (spec.domain or spec.etl_run):
            spec.urls.append(row.get("url", ""))
    return list(specs.values())


def from_json(text: str) -> list[Spec]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("missions")
    if not isinstance(data, list):
        raise ValueError('expected a list of missions (or {"missions": [...]})')
    specs = []
    for n, entry in enumerate(data, start=1):
        where = f"mission {n}"
        resumes = isinstance(entry, dict) and (entry.get("domain") or entry.get("etl_run"))
        if not isinstance(entry, dict) or not isinstance(
            entry.get("urls", [] if resumes else None), list
        ):
            raise ValueError(
                f'{where}: expected {{"name": ..., "urls": [...]}} (or a "domain" / '
                '"etl_run" to resume)'
            )
        specs.append(
            Spec(
                name=str(entry.get("name") or ""),
                urls=entry.get("urls") or [],
                priority=_int(entry.get("priority", 0), f"{where}: priority"),
                domain=str(entry.get("domain") or ""),
                etl_run=str(entry.get("etl_run") or ""),
                where=where,
            )
        )
    return specs


def validate(specs: list[Spec]) -> tuple[list[Spec], list[str]]:
    """The specs that create_mission will accept, and one message per rejected one. A
    spec that resumes an ETL run is checked against the ETL now (the API's rules)."""
    valid, errors = [], []
    runs: dict[str, str] = {}  # run id -> the spec that resumes it
    for n, spec in enumerate(specs, start=1):
        where = spec.where or f"mission {n}"
        problems: list[str] = []
        if not spec.name.strip():
            problems.append("name: may not be blank")
        if spec.resumes:
            problems.extend(_resume_problems(spec, where, runs))
        else:
            try:
                actions.clean_urls(spec.urls)
            except ValidationError as exc:
                problems.extend(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())
        if problems:
            errors.append(f"{where} ({spec.name or '?'}): {' | '.join(problems)}")
        else:
            valid.append(spec)
    return valid, errors


def _resume_problems(spec: Spec, where: str, runs: dict[str, str]) -> list[str]:
    if spec.etl_run and not ETL_RUN.fullmatch(spec.etl_run):
        return [f"etl_run: invalid run id {spec.etl_run!r}"]
    try:
        domain = normalize_domain(spec.domain) if spec.domain else ""
        resume = etl_outbox.resolve_resume(domain, spec.etl_run or None)
    except etl_outbox.EtlRefused as exc:
        return [f"etl_run ({exc.status_code} {exc.code}): {exc.message}"]
    if resume.run_id in runs:
        return [f"etl_run: the run {resume.run_id} is already resumed by {runs[resume.run_id]}"]
    runs[resume.run_id] = where
    return []


def _domain(url: str) -> str:
    try:
        return actions.domain_of(url)
    except ValueError:
        return ""


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, not {value!r}") from None
