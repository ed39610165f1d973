"""Stable cache keys: the content of the input files and the decisions, never a data frame."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 20


def files(folder: Path, pattern: str = "*.parquet") -> str:
    """SHA-256 over the names and bytes of the files in `folder` matching `pattern` (recursive),
    in name order; the empty string when there are none. Manifests are left out: they carry
    the time they were written, not data."""
    digest = hashlib.sha256()
    found = False
    for path in sorted(Path(folder).rglob(pattern)):
        if not path.is_file() or path.name.startswith("."):
            continue
        found = True
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest() if found else ""


def of(*parts: object) -> str:
    """A short key from JSON-able parts (strings, numbers, dicts of decisions)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
