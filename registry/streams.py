"""Import files read as streams: memory stays bounded by one entry, whatever the size.

- `spool(chunks, limit)`: copies a request body into a temporary file (1 MiB in memory,
  then disk), refusing more than `limit` bytes (FileRefused with `too_large`, a 413)
  whatever the Content-Length said.
- `text_chunks(stream)`: UTF-8 (a BOM is dropped) decoded piece by piece.
- `lines(chunks)`: the lines of a text, for the csv module; a line longer than
  MAX_LINE_CHARS is refused (the csv field limit is 128 KiB).
- `json_array(chunks)`: the entries of a top-level JSON array, one at a time, each at
  most MAX_ENTRY_CHARS long, nested at most hardening.MAX_JSON_DEPTH deep, without
  NaN/Infinity. A document that is not an array raises NotAnArray.
"""

from __future__ import annotations

import codecs
import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from mission_control import hardening

READ_BYTES = 64 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
MAX_ENTRY_CHARS = 64 * 1024
MAX_LINE_CHARS = 1024 * 1024
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class FileRefused(ValueError):
    """The file as a whole is refused: `message` for the API (English), `message_pt`
    for the console; `too_large` answers 413, anything else 400."""

    def __init__(self, message: str, message_pt: str = "", *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.message_pt = message_pt or message
        self.too_large = too_large


class NotAnArray(FileRefused):
    def __init__(self) -> None:
        super().__init__(
            "must be a JSON array of proxies.", "O JSON precisa ser uma lista de proxies."
        )


def too_large(limit: int) -> FileRefused:
    return FileRefused(
        f"larger than {limit} bytes.",
        f"Arquivo grande demais (máximo {limit // (1024 * 1024)} MB).",
        too_large=True,
    )


def spool(chunks: Iterable[bytes], limit: int) -> IO[bytes]:
    """The bytes of `chunks` in a rewound temporary file; FileRefused past `limit`."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (returned open)
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            out.close()
            raise too_large(limit)
        out.write(chunk)
    out.seek(0)
    return out


def read_chunks(stream: Any, size: int = READ_BYTES) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def text_chunks(stream: Any) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        for chunk in read_chunks(stream):
            if text := decoder.decode(chunk):
                yield text
        if text := decoder.decode(b"", final=True):
            yield text
    except UnicodeDecodeError:
        raise FileRefused("must be UTF-8.", "O arquivo precisa estar em UTF-8.") from None


def lines(chunks: Iterable[str]) -> Iterator[str]:
    pending = ""
    for chunk in chunks:
        parts = (pending + chunk).splitlines(keepends=True)
        pending = parts.pop() if parts and not parts[-1].endswith(("\n", "\r")) else ""
        if len(pending) > MAX_LINE_CHARS:
            raise FileRefused(
                f"a line longer than {MAX_LINE_CHARS} characters.",
                f"Uma linha com mais de {MAX_LINE_CHARS} caracteres.",
            )
        yield from parts
    if pending:
        yield pending


def _no_constant(name: str) -> Any:
    raise FileRefused(f"{name} is not a JSON number.", f"{name} não é um número JSON.")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _invalid(detail: str) -> FileRefused:
    return FileRefused(f"not valid JSON ({detail}).", f"JSON inválido ({detail}).")


def _too_long() -> FileRefused:
    return FileRefused(
        f"an entry longer than {MAX_ENTRY_CHARS} characters.",
        f"Uma entrada com mais de {MAX_ENTRY_CHARS} caracteres.",
    )


class _JsonArray:
    """A cursor over a JSON document arriving in pieces; keeps one entry in memory."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self.chunks = iter(chunks)
        self.buf = ""
        self.pos = 0
        self.eof = False

    def _more(self) -> bool:
        for chunk in self.chunks:
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
            return True
        self.eof = True
        return False

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end)."""
        while True:
            match = _WHITESPACE.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self.buf) - 8 or exc.msg.startswith("Unterminated")
                if len(self.buf) - self.pos > MAX_ENTRY_CHARS:
                    raise _too_long() from None
                if incomplete and self._more():
                    continue
                raise _invalid(exc.msg) from None
            except RecursionError:
                raise _invalid(f"nested deeper than {hardening.MAX_JSON_DEPTH} levels") from None
            if end == len(self.buf) and not self.eof and self._more():
                continue  # a number may go on in the next piece
            if end - self.pos > MAX_ENTRY_CHARS:
                raise _too_long()
            self.pos = end
            if hardening._too_deep(value, hardening.MAX_JSON_DEPTH - 1):
                raise _invalid(f"nested deeper than {hardening.MAX_JSON_DEPTH} levels")
            return value

    def expect_end(self) -> None:
        if self.peek():
            raise _invalid("text after the end of the array")


def json_array(chunks: Iterable[str]) -> Iterator[tuple[int, Any]]:
    doc = _JsonArray(chunks)
    first = doc.peek()
    if first != "[":
        raise NotAnArray() if first else _invalid("empty document")
    doc.pos += 1
    index = 0
    if doc.peek() == "]":
        doc.pos += 1
        doc.expect_end()
        return
    while True:
        yield index, doc.value()
        index += 1
        following = doc.peek()
        doc.pos += 1
        if following == "]":
            doc.expect_end()
            return
        if following != ",":
            raise _invalid("expected , or ]")


def sniff_json(stream: Any, filename: str = "") -> bool:
    """Whether a rewindable file looks like JSON (and is not named .csv); rewinds it."""
    head = stream.read(4096)
    stream.seek(0)
    text = head.decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    return not filename.lower().endswith(".csv") and text[:1] in ("[", "{")
