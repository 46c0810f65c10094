"""The repository carries everything its code, tests and docs need: nothing in it may
read or link to a path outside its own tree (a fresh clone has nothing beside it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]

SKIP_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    "var",
    "staticfiles",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "screenshots",
}
SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".sh", ".yml", ".yaml", ".txt", ".html"}
SUFFIXES |= {".css", ".js", ".service", ".target", ".example", ".dev"}
NAMES = {"Makefile", "Dockerfile", "run", ".dockerignore", ".gitignore"}

# `Path(__file__).resolve().parents[2].parent` or `Path(__file__).parent.parent`.
PARENTS = re.compile(r"__file__\)(?:\.resolve\(\))?(?:\.parents\[(\d+)\])?((?:\.parent\b)*)")
# Relative climbs in docs, shell, CSS and config ("../x"); in code "../" is often a URL.
CLIMB = re.compile(r"(?<![\w./])((?:\.\./)+)")
# Absolute paths of the machines the project was built on, and the sibling folder.
FOREIGN = re.compile(
    r"/work/|\.\./shared\b|(?<![\w-])shared/(?:examples|contracts)|\"shared\"\s*/|/\s*\"shared\""
    # The design notes kept beside the repository on the machines it was built on: the
    # engine's rules live in docs/engine.md instead.
    r"|\bDESIGN\.md\b|\bSTYLE\.md\b|(?<![\w/-])seeds/"
)
CODE = {".py", ".html", ".js"}


def project_files() -> Iterator[Path]:
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix in SUFFIXES or name in NAMES:
                yield path


def escapes(rel: PurePosixPath, text: str) -> list[str]:
    """Each reference in `text` (the file at `rel`, relative to the root) that leaves the tree."""
    found = []
    depth = len(rel.parts) - 1  # folders between the root and the file
    for m in PARENTS.finditer(text):
        ups = (int(m.group(1)) + 1 if m.group(1) is not None else 0) + m.group(2).count(".parent")
        if ups > depth + 1:  # from the file itself: depth + 1 steps reach the root
            found.append(m.group(0))
    for m in CLIMB.finditer("" if rel.suffix in CODE else text):
        if m.group(1).count("../") > depth:
            found.append(m.group(0))
    found += [m.group(0) for m in FOREIGN.finditer(text)]
    return found


CASES = Path(__file__).with_name("self_contained_cases.tsv")
# The files that spell the patterns they look for.
SPELLED = {"tests/unit/test_self_contained.py", "tests/unit/self_contained_cases.tsv"}


def test_the_checker_catches_each_way_out() -> None:
    lines = [ln for ln in CASES.read_text("utf-8").splitlines() if ln and not ln.startswith("#")]
    assert len(lines) >= 10
    for line in lines:
        rel, text, expected = line.split("\t")
        assert bool(escapes(PurePosixPath(rel), text)) == (expected == "yes"), line


def test_nothing_in_the_repository_reaches_outside_its_tree() -> None:
    offenders = {}
    checked = 0
    for path in project_files():
        rel = PurePosixPath(path.relative_to(ROOT).as_posix())
        if rel.as_posix() in SPELLED:
            continue
        checked += 1
        found = escapes(rel, path.read_text(encoding="utf-8", errors="replace"))
        if found:
            offenders[str(rel)] = found
    assert checked > 100, "the walk found too few files: is ROOT right?"
    assert offenders == {}


def test_every_contract_the_code_cites_is_in_the_repository() -> None:
    """The contracts the code, tests and docs name (`docs/contracts/*.md`) ship with the
    repository, so a clone can read what the built-in worker and the clients follow."""
    cited = set()
    for path in ROOT.rglob("*"):
        if path.suffix not in {".py", ".md"} or {".venv", "node_modules", ".git"} & set(path.parts):
            continue
        cited |= set(re.findall(r"docs/contracts/([a-z-]+\.md)", path.read_text("utf-8")))
    assert cited, "no contract cited: the pattern is stale"
    assert sorted(c for c in cited if not (ROOT / "docs/contracts" / c).is_file()) == []
