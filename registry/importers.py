"""Import of the seed's local files: `proxies.json` (or CSV) and `proxy-strategies.json`.

Parsing and validation are pure functions (data in, rows and per-index errors out);
`apply_*` upsert the valid rows in one transaction. The API and the management
commands share both.

Proxies CSV header (any order; only id, type and either host+port or server are required)::

    id,type,scheme,host,port,username,password,country,provider,max_sessions,enabled,server
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
from django.conf import settings
from django.db import transaction

from mission_control import hardening
from registry import site_rules, streams
from registry.models import DEFAULT_DOMAIN, Engine, Proxy, ProxyScheme, ProxyType, SiteConfig
from registry.serializers import PROXY_IMPORT_ENTRY_SCHEMA, clean_country, clean_domain
from registry.streams import FileRefused

CHUNK = 1000
# Entries with their reasons in an answer (every bad entry is counted in `skipped`).
MAX_REPORTED_ERRORS = 1000
CSV_COLUMNS = (
    "id",
    "type",
    "scheme",
    "host",
    "port",
    "username",
    "password",
    "country",
    "provider",
    "max_sessions",
    "enabled",
    "server",
)
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TRUE = {"true", "1", "yes", "y", "sim", "on"}
_FALSE = {"false", "0", "no", "n", "nao", "não", "off", ""}

Progress = Callable[[int, int], None]


class EntryInvalid(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class EntryError:
    index: int
    key: str
    errors: dict[str, str]
    # False for an entry of a JSON request body outside its schema: the request is
    # malformed, and skip_invalid does not skip it.
    skippable: bool = True

    def describe(self) -> str:
        what = f" ({self.key})" if self.key else ""
        reasons = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        return f"entry {self.index}{what}: {reasons}"


@dataclass(frozen=True)
class ProxyRow:
    external_id: str
    type: str
    scheme: str
    host: str
    port: int
    username: str
    password: str
    country: str
    provider: str
    # None: keep the stored value on update, the model default on create.
    max_sessions: int | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class SiteConfigRow:
    domain: str
    values: dict[str, Any]


@dataclass
class Parsed:
    rows: list[Any] = field(default_factory=list)
    errors: list[EntryError] = field(default_factory=list)

    def error_fields(self) -> dict[str, dict[str, str]]:
        return {str(e.index): e.errors for e in self.errors}


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    skipped: int = 0


# -- small validators -------------------------------------------------------------


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def _text(value: Any, name: str, max_length: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise EntryInvalid({name: "must be a string."})
    if problem := hardening.text_problem(value):
        raise EntryInvalid({name: f"{problem}."})
    value = value.strip()
    if required and not value:
        raise EntryInvalid({name: "is required."})
    if len(value) > max_length:
        raise EntryInvalid({name: f"must have at most {max_length} characters."})
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntryInvalid({name: "must be an integer."})
    if not low <= value <= high:
        raise EntryInvalid({name: f"must be between {low} and {high}."})
    return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise EntryInvalid({name: "must be true or false."})


def _country(value: Any, name: str = "geo") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, dict):
        # {"country": "us", "city": ...}: the key and the code may come in any case.
        found = {str(k).lower(): v for k, v in value.items()}
        return _country(found.get("country") or found.get("country_code"), name)
    try:
        return clean_country(value)
    except ValueError as exc:
        raise EntryInvalid({name: str(exc)}) from None


def _choice(value: Any, name: str, choices: Iterable[str]) -> str:
    allowed = list(choices)
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise EntryInvalid({name: f"{value!r} is not one of {', '.join(allowed)}."})
    return value.strip().lower()


def _collect(entry: dict[str, Any], checks: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run every check, gathering all field errors of the entry at once."""
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, check in checks.items():
        try:
            out[name] = check()
        except EntryInvalid as exc:
            errors.update(exc.errors)
    if errors:
        raise EntryInvalid(errors)
    return out


# -- proxies ----------------------------------------------------------------------


def _proxy_address(entry: dict[str, Any]) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, username, password) from `server` or host+port."""
    username = _text(entry.get("username"), "username", 255)
    password = _text(entry.get("password"), "password", 255)
    server = entry.get("server")
    if server not in (None, ""):
        if not isinstance(server, str):
            raise EntryInvalid({"server": "must be a URL string."})
        try:
            parts = urlsplit(server.strip())
            port = parts.port
        except ValueError:
            raise EntryInvalid({"server": "is not a valid URL."}) from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise EntryInvalid({"server": "scheme must be http, https or socks5."})
        if not parts.hostname:
            raise EntryInvalid({"server": "has no host."})
        if parts.username:
            username = unquote(parts.username)
            password = unquote(parts.password or "")
        return scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password
    scheme = _choice(entry.get("scheme") or "http", "scheme", ProxyScheme.values)
    host = _text(entry.get("host"), "host", 255, required=True).strip("[]")
    if any(c in host for c in " /@?#"):
        raise EntryInvalid({"host": "must be a host name or IP address."})
    if entry.get("port") in (None, ""):
        raise EntryInvalid({"port": "is required (or give a server URL)."})
    port = _int(entry.get("port"), "port", 1, 65535)
    return scheme, host, port, username, password


# An entry of a JSON request body is held to the schema the API publishes for it
# (serializers.PROXY_IMPORT_ENTRY_SCHEMA; OpenAPI 3.0's schema objects are JSON Schema
# draft 4: an integer is never 1.0 or true). A file may also spell its keys `_id`,
# `server`, `geo` or in snake_case, and numbers as text.
JSON_BODY_SCHEMA = jsonschema.Draft4Validator(PROXY_IMPORT_ENTRY_SCHEMA)
JSON_BODY_KEYS = frozenset(PROXY_IMPORT_ENTRY_SCHEMA["properties"])


def _json_body_errors(entry: dict[str, Any]) -> dict[str, str]:
    """Why an entry of a JSON body falls outside its schema, by field (each unknown key
    and each missing one named); empty when it does not."""
    errors: dict[str, str] = {}
    for key in entry:
        if key not in JSON_BODY_KEYS:
            errors[str(key)] = "is not a field of an entry."
    for error in JSON_BODY_SCHEMA.iter_errors(entry):
        if error.validator == "required":
            for name in error.validator_value:
                if name not in entry:
                    errors.setdefault(name, "is required.")
        elif error.path:  # additionalProperties has none: named above, one by one
            errors.setdefault(str(error.path[0]), _schema_message(error))
    return errors


def _schema_message(error: jsonschema.ValidationError) -> str:
    """The schema rule a field broke, without echoing its value (a password)."""
    if error.validator == "type":
        return f"must be a JSON {error.validator_value}."
    return f"breaks the schema's {error.validator} ({error.validator_value})."


def parse_proxy(entry: Any) -> ProxyRow:
    if not isinstance(entry, dict):
        raise EntryInvalid({"entry": "must be an object."})
    entry = {_snake(str(k)): v for k, v in entry.items()}
    raw_id = entry.get("id") if entry.get("id") not in (None, "") else entry.get("_id")
    geo = entry.get("geo") if entry.get("geo") not in (None, "") else entry.get("country")
    values = _collect(
        entry,
        {
            "external_id": lambda: _text(raw_id, "id", 100, required=True),
            "type": lambda: _choice(entry.get("type"), "type", ProxyType.values),
            "address": lambda: _proxy_address(entry),
            "country": lambda: _country(geo),
            "provider": lambda: _text(entry.get("provider"), "provider", 100),
            "max_sessions": lambda: (
                None
                if entry.get("max_sessions") in (None, "")
                else _int(entry["max_sessions"], "maxSessions", 1, 1000)
            ),
            "enabled": lambda: (
                None if entry.get("enabled") is None else _bool(entry["enabled"], "enabled")
            ),
        },
    )
    scheme, host, port, username, password = values.pop("address")
    return ProxyRow(
        scheme=scheme, host=host, port=port, username=username, password=password, **values
    )


def parse_proxies(data: Any) -> Parsed:
    """Validate a decoded proxies.json (a list of objects) entry by entry."""
    if not isinstance(data, list):
        return Parsed(errors=[EntryError(0, "", {"file": "must be a JSON array of proxies."})])
    return _parse_entries(enumerate(data), parse_proxy)


def _csv_entries(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(index, entry) of a CSV proxies file, one line at a time. A bad header raises
    FileRefused; a field over the CSV limit, a NUL byte or a broken quote csv.Error."""
    reader = csv.DictReader(lines)
    try:
        header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise FileRefused(f"CSV: {exc}.", "CSV inválido: " + str(exc)) from None
    missing = {"id", "type"} - set(header)
    if missing or not ({"host", "port"} <= set(header) or "server" in header):
        raise FileRefused(
            f"CSV header must include id, type and host+port or server: {CSV_COLUMNS}",
            "O cabeçalho do CSV precisa ter id, type e host+port ou server.",
        )
    reader.fieldnames = header
    for index, row in enumerate(reader):
        yield index, {k: v for k, v in row.items() if k and v not in (None, "")}


def parse_proxies_csv(text: str) -> Parsed:
    try:
        return _parse_entries(_csv_entries(io.StringIO(text.lstrip("\ufeff"))), parse_proxy)
    except FileRefused as exc:
        return Parsed(errors=[EntryError(0, "", {"file": exc.message})])


def parse_proxies_text(text: str, filename: str = "") -> Parsed:
    """A proxies file as text: JSON when it looks like JSON (and is not named .csv),
    else CSV. Raises ValueError when JSON does not decode."""
    text = text.lstrip("\ufeff")
    if not filename.lower().endswith(".csv") and text.lstrip()[:1] in ("[", "{"):
        return parse_proxies(hardening.loads(text))
    return parse_proxies_csv(text)


def max_rows() -> int:
    """Entries per import (JSON, CSV, multipart, dashboard, command): more is refused."""
    return int(settings.IMPORT_MAX_ROWS)


def max_bytes() -> int:
    """Bytes per import file or body; more is refused with a 413."""
    return int(settings.IMPORT_MAX_BYTES)


def _too_many_rows() -> FileRefused:
    limit = max_rows()
    return FileRefused(f"more than {limit} entries.", f"Mais de {limit} entradas.")


def _parse_entries(entries: Iterable[tuple[int, Any]], parse: Callable[[Any], Any]) -> Parsed:
    parsed = Parsed()
    seen: set[str] = set()
    try:
        for index, entry in entries:
            if index >= max_rows():
                raise _too_many_rows()
            _parse_entry(parsed, seen, index, entry, parse)
    except csv.Error as exc:  # a field over the CSV limit, a NUL byte, a broken quote
        parsed.errors.append(EntryError(len(parsed.rows), "", {"file": f"CSV: {exc}."}))
    except FileRefused as exc:
        parsed.errors.append(EntryError(len(parsed.rows), "", {"file": exc.message}))
    return parsed


def _parse_entry(
    parsed: Parsed, seen: set[str], index: int, entry: Any, parse: Callable[[Any], Any]
) -> None:
    key = ""
    if isinstance(entry, dict):
        key = str(entry.get("id") or entry.get("_id") or "")
    try:
        row = parse(entry)
    except EntryInvalid as exc:
        parsed.errors.append(EntryError(index, key, exc.errors))
        return
    if row.external_id in seen:
        parsed.errors.append(EntryError(index, key, {"id": "appears more than once."}))
        return
    seen.add(row.external_id)
    parsed.rows.append(row)


@dataclass
class Checked:
    """What a first pass over a proxies file found: the valid count, every bad entry
    counted, the first MAX_REPORTED_ERRORS of them kept with their reasons."""

    valid: int = 0
    error_count: int = 0
    unskippable: int = 0  # entries of a strict body outside its schema (EntryError)
    errors: list[EntryError] = field(default_factory=list)
    # A JSON document that is not an array: one "entry" error (the API's shape).
    not_an_array: FileRefused | None = None

    def error_fields(self) -> dict[str, dict[str, str]]:
        return {str(e.index): e.errors for e in self.errors}


class ProxyFile:
    """A proxies file (a JSON array or CSV) in a rewindable binary file, read as a
    stream twice: `check()` validates every entry, `apply()` upserts the valid ones.
    Memory stays bounded by a chunk of rows and the set of ids, whatever the size;
    the file's bytes and entries are limited (IMPORT_MAX_BYTES, IMPORT_MAX_ROWS)."""

    def __init__(self, stream: Any, *, is_json: bool, strict: bool = False) -> None:
        self.stream = stream
        self.is_json = is_json
        # A JSON request body (not a file): its entries follow the API's entry schema
        # (JSON_BODY_KEYS, no `_id`/`server`/`geo` spellings), and one outside it makes
        # the request malformed whatever skip_invalid says.
        self.strict = strict

    @classmethod
    def open(cls, stream: Any, filename: str = "") -> ProxyFile:
        """A rewindable file (an upload, a spooled body, a file on disk)."""
        return cls(stream, is_json=streams.sniff_json(stream, filename))

    @classmethod
    def from_body(cls, stream: Any, *, is_json: bool) -> ProxyFile:
        """A request body, spooled to a temporary file; FileRefused past the limit. A
        JSON body is strict (see __init__)."""
        spooled = streams.spool(streams.read_chunks(stream), max_bytes())
        return cls(spooled, is_json=is_json, strict=is_json)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> ProxyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _entries(self) -> Iterator[tuple[int, Any]]:
        self.stream.seek(0)
        text = streams.text_chunks(self.stream)
        if self.is_json:
            return streams.json_array(text)
        return _csv_entries(streams.lines(text))

    def outcomes(self) -> Iterator[ProxyRow | EntryError]:
        """Each entry, parsed: a row, or why it is refused. FileRefused for the file."""
        seen: set[str] = set()
        entries = self._entries()
        try:
            for index, entry in entries:
                if index >= max_rows():
                    raise _too_many_rows()
                key = (
                    str(entry.get("id") or entry.get("_id") or "")
                    if isinstance(entry, dict)
                    else ""
                )
                try:
                    row = self._parse(entry)
                except EntryInvalid as exc:
                    yield EntryError(index, key, exc.errors, skippable=not self.strict)
                    continue
                if row.external_id in seen:
                    yield EntryError(index, key, {"id": "appears more than once."})
                    continue
                seen.add(row.external_id)
                yield row
        except csv.Error as exc:  # a field over the CSV limit, a NUL byte, a broken quote
            raise FileRefused(f"CSV: {exc}.", f"CSV inválido: {exc}.") from None

    def _parse(self, entry: Any) -> ProxyRow:
        if self.strict and isinstance(entry, dict):
            errors = _json_body_errors(entry)
            if errors:
                raise EntryInvalid(errors)
        return parse_proxy(entry)

    def check(self) -> Checked:
        checked = Checked()
        try:
            for outcome in self.outcomes():
                if isinstance(outcome, EntryError):
                    checked.error_count += 1
                    checked.unskippable += not outcome.skippable
                    if len(checked.errors) < MAX_REPORTED_ERRORS:
                        checked.errors.append(outcome)
                else:
                    checked.valid += 1
        except streams.NotAnArray as exc:
            checked.error_count += 1
            checked.errors.append(EntryError(0, "", {"file": exc.message}))
            checked.not_an_array = exc
        return checked

    def apply(self, progress: Progress | None = None, total: int | None = None) -> ImportSummary:
        """Upsert the valid entries (run `check()` first: the file is read again)."""
        rows = (o for o in self.outcomes() if isinstance(o, ProxyRow))
        return apply_proxies(rows, progress, total=total)


_PROXY_FIELDS = ("type", "scheme", "host", "port", "username", "password", "country", "provider")


def _keeps_password(proxy: Proxy, row: ProxyRow) -> bool:
    """An entry without a password keeps the stored one, unless the address changed
    (a password is never carried over to another scheme, host, port or username)."""
    if proxy.pk is None or row.password or not proxy.password:
        return False
    return all(getattr(proxy, n) == getattr(row, n) for n in ("scheme", "host", "port", "username"))


def _chunks(rows: Iterable[ProxyRow]) -> Iterator[list[ProxyRow]]:
    chunk: list[ProxyRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _upsert(chunk: list[ProxyRow], summary: ImportSummary) -> None:
    existing = Proxy.objects.in_bulk([r.external_id for r in chunk], field_name="external_id")
    new, changed = [], []
    for row in chunk:
        proxy = existing.get(row.external_id)
        if proxy is None:
            proxy = Proxy(external_id=row.external_id)
            new.append(proxy)
        else:
            changed.append(proxy)
        keep_password = _keeps_password(proxy, row)
        for name in _PROXY_FIELDS:
            if not (name == "password" and keep_password):
                setattr(proxy, name, getattr(row, name))
        if row.max_sessions is not None:
            proxy.max_sessions = row.max_sessions
        if row.enabled is not None:
            proxy.enabled = row.enabled
    Proxy.objects.bulk_create(new)
    Proxy.objects.bulk_update(changed, [*_PROXY_FIELDS, "max_sessions", "enabled", "updated_at"])
    summary.created += len(new)
    summary.updated += len(changed)


def apply_proxies(
    rows: Iterable[ProxyRow], progress: Progress | None = None, *, total: int | None = None
) -> ImportSummary:
    """Upsert by external id in one transaction, CHUNK rows per statement; `rows` may
    be a stream (only one chunk is held at a time).

    Runtime state (status, counters, cooldown) of an existing proxy is kept."""
    summary = ImportSummary()
    if total is None and isinstance(rows, list):
        total = len(rows)
    done = 0
    with transaction.atomic():
        for chunk in _chunks(rows):
            _upsert(chunk, summary)
            done += len(chunk)
            if progress:
                progress(done, total if total is not None else done)
    return summary


# -- site configs (proxy strategies) ----------------------------------------------

_STRATEGY_ALIASES = {"geo": "countries", "blocked_proxy_ids": "blocked_proxies"}


def _str_list(value: Any, name: str, clean: Callable[[str], str] | None = None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EntryInvalid({name: "must be a list of strings."})
    out = []
    for v in value:
        try:
            out.append(clean(v) if clean else v.strip())
        except ValueError as exc:
            raise EntryInvalid({name: str(exc)}) from None
    return sorted({v for v in out if v})


def _selectors(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise EntryInvalid({"selectors": "must map names to CSS selectors (strings)."})
    return value


def _headers(value: Any) -> dict[str, str] | None:
    try:
        return site_rules.clean_headers(value)
    except ValueError as exc:
        raise EntryInvalid({"headers": str(exc)}) from None


def parse_strategy(domain: str, entry: Any) -> SiteConfigRow:
    if not isinstance(entry, dict):
        raise EntryInvalid({"entry": "must be an object."})
    entry = {_snake(str(k)): v for k, v in entry.items()}
    entry = {_STRATEGY_ALIASES.get(k, k): v for k, v in entry.items()}
    checks: dict[str, Callable[[], Any]] = {
        "domain": lambda: _domain(domain),
        "proxy_types": lambda: _str_list(
            entry.get("proxy_types"),
            "proxyTypes",
            lambda v: _choice(v, "proxyTypes", ProxyType.values),
        ),
        "countries": lambda: _str_list(entry.get("countries"), "geo", clean_country),
        "blocked_proxies": lambda: _str_list(entry.get("blocked_proxies"), "blockedProxyIds"),
    }
    optional: dict[str, Callable[[Any], Any]] = {
        "max_sessions": lambda v: _int(v, "maxSessions", 1, 1000),
        "items_per_job": lambda v: _int(v, "itemsPerJob", 1, 1000),
        "job_timeout_s": lambda v: _int(v, "jobTimeoutS", 1, 86400),
        "session_timeout_s": lambda v: _int(v, "sessionTimeoutS", 1, 86400),
        "engine": lambda v: _choice(v, "engine", Engine.values),
        "selectors": _selectors,
        "enabled": lambda v: _bool(v, "enabled"),
        "max_concurrent_sessions": lambda v: _int(v, "maxConcurrentSessions", 1, 10_000),
        "min_delay_ms": lambda v: _int(v, "minDelayMs", 0, 600_000),
        "max_requests_per_minute": lambda v: _int(v, "maxRequestsPerMinute", 1, 100_000),
        "respect_robots": lambda v: _bool(v, "respectRobots"),
        "user_agent": lambda v: _text(v, "userAgent", 500),
        "headers": _headers,
    }
    for name, check in optional.items():
        if entry.get(name) is not None:
            checks[name] = lambda check=check, name=name: check(entry[name])  # type: ignore[misc]
    values = _collect(entry, checks)
    return SiteConfigRow(domain=values.pop("domain"), values=values)


def _domain(value: str) -> str:
    if value == "default":
        return DEFAULT_DOMAIN
    try:
        return clean_domain(value)
    except ValueError as exc:
        raise EntryInvalid({"domain": str(exc)}) from None


def parse_strategies(data: Any) -> Parsed:
    """Validate a decoded proxy-strategies.json. Entries are indexed in file order:
    `default` first (when present), then each of `domains`."""
    if not isinstance(data, dict) or not isinstance(data.get("domains", {}), dict):
        return Parsed(
            errors=[EntryError(0, "", {"file": 'must be {"default": {...}, "domains": {...}}.'})]
        )
    entries: list[tuple[str, Any]] = []
    if "default" in data:
        entries.append(("default", data["default"]))
    entries.extend((str(k), v) for k, v in (data.get("domains") or {}).items())
    if len(entries) > max_rows():
        return Parsed(errors=[EntryError(0, "", {"file": _too_many_rows().message})])
    parsed = Parsed()
    seen: set[str] = set()
    for index, (key, entry) in enumerate(entries):
        try:
            row = parse_strategy(key, entry)
        except EntryInvalid as exc:
            parsed.errors.append(EntryError(index, key, exc.errors))
            continue
        if row.domain in seen:
            parsed.errors.append(
                EntryError(index, key, {"domain": f"{row.domain!r} appears more than once."})
            )
            continue
        seen.add(row.domain)
        parsed.rows.append(row)
    return parsed


def apply_strategies(rows: list[SiteConfigRow], progress: Progress | None = None) -> ImportSummary:
    summary = ImportSummary()
    with transaction.atomic():
        existing = SiteConfig.objects.in_bulk([r.domain for r in rows], field_name="domain")
        for done, row in enumerate(rows, 1):
            config = existing.get(row.domain) or SiteConfig(domain=row.domain)
            created = config.pk is None
            for name, value in row.values.items():
                setattr(config, name, value)
            config.save()
            if created:
                summary.created += 1
            else:
                summary.updated += 1
            if progress and (done % CHUNK == 0 or done == len(rows)):
                progress(done, len(rows))
    return summary
