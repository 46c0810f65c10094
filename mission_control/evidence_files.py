"""Screenshots of failure evidence as files under the data folder
(``settings.EVIDENCE_DIR``), never as base64 in the database: the database keeps the
file's relative path. Served only through logged-in views (the dashboard's item page,
the API's item screenshot); retention deletes old ones (``sweep``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings

PNG_MAGIC = b"\x89PNG"
# A file no row names yet may belong to a transaction still open: spared this long.
ORPHAN_GRACE = dt.timedelta(hours=1)


def root() -> Path:
    return Path(settings.EVIDENCE_DIR)


def save_png(mission_id: int, item_id: int, attempt: int, png: bytes) -> str:
    """Write the screenshot and return its path relative to the root ("" when `png`
    is not a PNG). Content-addressed: the same bytes are written once."""
    if not png.startswith(PNG_MAGIC):
        return ""
    digest = hashlib.sha256(png).hexdigest()[:24]
    relpath = f"{int(mission_id)}/i{int(item_id)}-a{int(attempt)}-{digest}.png"
    path = root() / relpath
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(png)
        os.replace(tmp, path)  # readers never see half a file
    return relpath


def resolve(relpath: str) -> Path | None:
    """The file of `relpath` when it exists inside the root (None otherwise)."""
    if not relpath:
        return None
    base = root().resolve()
    path = (base / relpath).resolve()
    if base not in path.parents or not path.is_file():
        return None
    return path


def read(relpath: str) -> bytes | None:
    path = resolve(relpath)
    return path.read_bytes() if path else None


def sweep(referenced: set[str], now: dt.datetime) -> int:
    """Delete the screenshots no evidence row names any more (their rows were pruned or
    replaced), sparing files younger than ORPHAN_GRACE. Returns how many went."""
    base = root()
    if not base.is_dir():
        return 0
    cutoff = (now - ORPHAN_GRACE).timestamp()
    removed = 0
    for path in base.rglob("*.png"):
        rel = path.relative_to(base).as_posix()
        if rel in referenced:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    for directory in sorted((d for d in base.iterdir() if d.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only empty ones go
    return removed
