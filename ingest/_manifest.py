"""The raw dataset's `manifest.json`: one typed model, one reader, one writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

FILE = "manifest.json"


class RawManifest(BaseModel):
    """Where a raw dataset came from, the window it covers and its tables' row counts."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["world", "import"]
    end: dt.datetime
    start: dt.datetime | None = None
    tables: dict[str, int] = {}
    written_at: dt.datetime | None = None
    # A simulated world's settings.
    seed: int | None = None
    users: int | None = None
    days: int | None = None
    truth_every_days: int | None = None
    horizons_days: list[int] | None = None
    # The simulator's code and the raw tables' contracts it wrote to (`steps.world.generator`):
    # the same settings make the same world only with the same code.
    generator: str | None = None
    # An imported log's file, its SHA-256 and the options it was read with.
    file: str | None = None
    file_sha256: str | None = None
    options: dict[str, str | None] | None = None


def read_manifest(folder: Path) -> RawManifest | None:
    """The folder's manifest, or None when it has none; ValueError names a broken one."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        return RawManifest.model_validate_json(path.read_bytes())
    except (ValidationError, OSError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc})") from exc


def write_manifest(folder: Path, manifest: RawManifest) -> None:
    """Writes `manifest.json` into a (staged) folder, stamping when it was written."""
    if manifest.written_at is None:
        manifest = manifest.model_copy(update={"written_at": dt.datetime.now(dt.UTC)})
    text = manifest.model_dump_json(indent=2, exclude_none=True)
    (Path(folder) / FILE).write_text(text + "\n")
