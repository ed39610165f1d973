"""What the command-line tests share about a workspace."""

from __future__ import annotations

import hashlib
from pathlib import Path


def workspace_bytes(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its SHA-256, the log left out: a refused command must leave
    these as they were."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "cadence.log"
    }
