"""Logging helpers: secrets never reach a log line."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from urllib.parse import quote

# Credentials inside URLs (scheme://user:pass@host) and bearer tokens.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
# Secrets in query strings (?token=..., &api_key=...).
_QUERY_SECRET = re.compile(
    r"([?&](?:token|access_token|auth|api_key|apikey|key|password|passwd|secret|sig|signature)=)"
    r"[^&#\s\"']+",
    re.I,
)


def redact(text: str) -> str:
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***:***@", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    return _BEARER.sub(r"\1***", text)


def hide(text: str, secrets: Iterable[str]) -> str:
    """`redact`, then every known secret replaced by *** in any letter case and in its
    URL-encoded form (a service that echoes our key upper-cased still leaks it)."""
    text = redact(text)
    for secret in {s for s in secrets if s and len(s) >= 3}:
        for form in {secret, quote(secret, safe="")}:
            text = re.sub(re.escape(form), "***", text, flags=re.IGNORECASE)
    return text


class RedactSecretsFilter(logging.Filter):
    """Masks credentials in URLs and bearer tokens in the final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the caller's bug; let logging report it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_HEALTH_PATHS = ("/health", "/healthz", "/readyz", "/healthz/orchestrator")


class QuietHealthChecksFilter(logging.Filter):
    """Drops the development server's lines for health checks that succeeded: they come
    every few seconds and say nothing happened. A failed one is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        args = record.args if isinstance(record.args, tuple) else ()
        if not isinstance(status, int) or status >= 400 or not args:
            return True
        parts = str(args[0]).split()
        path = parts[1].split("?")[0].rstrip("/") if len(parts) > 1 else ""
        return not path.endswith(_HEALTH_PATHS)


# Attributes every LogRecord has; anything else came from `extra=` and is logged.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the `extra` fields
    (mission_id, attempt, error_code, ...), with credentials redacted."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
            if self.converter is time.gmtime
            else self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            if isinstance(value, str):
                value = redact(value)
            elif not isinstance(value, int | float | bool | type(None)):
                value = redact(str(value))
            payload[key] = value
        if record.exc_info:
            payload["exc_info"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


JsonFormatter.converter = time.gmtime
