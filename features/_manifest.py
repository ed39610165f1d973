"""The feature build's `manifest.json`: one typed model, one reader, one writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

FILE = "manifest.json"


class MissingFeatures(ValueError):
    """No feature build in the folder; the message says how to make one."""


class FeatureManifest(BaseModel):
    """What a build holds: its engine, snapshots, row and feature counts per family."""

    model_config = ConfigDict(extra="forbid")

    engine: str
    data: str
    snapshots: list[dt.datetime]
    rows: int
    user_features: int
    families: dict[str, int]
    families_left_out: list[str]
    node_features: int
    built_at: dt.datetime | None = None
    # The raw data's manifest stamp the build read, to tell when the raw data is newer.
    data_written_at: dt.datetime | None = None
    # Lineage: SHA-256 of the raw tables the build read (a step refuses features whose raw
    # data changed since; the flows skip an unchanged build), and of the build's own Parquet
    # files (what a model version and a Feast registry record having read).
    data_fingerprint: str | None = None
    fingerprint: str | None = None


def read_manifest(folder: Path) -> FeatureManifest:
    path = Path(folder) / FILE
    if not path.exists():
        raise MissingFeatures(f"no features in {folder}; run `cadence features build` first")
    try:
        return FeatureManifest.model_validate_json(path.read_bytes())
    except (ValidationError, OSError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc})") from exc


def write_manifest(folder: Path, manifest: FeatureManifest) -> None:
    if manifest.built_at is None:
        manifest = manifest.model_copy(update={"built_at": dt.datetime.now(dt.UTC)})
    (Path(folder) / FILE).write_text(manifest.model_dump_json(indent=2, exclude_none=True) + "\n")
