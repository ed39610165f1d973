"""Lineage: what each stage read, and a stop before anything uses input that changed since.

The raw tables' fingerprint is computed when asked (SHA-256 over their Parquet files, about
1 GB/s); a feature build records it and a fingerprint of its own files; `features apply`
records the build it registered (`feast/applied.json`); a model version records the build
it was trained on (its `features_fingerprint` tag); a list records both through `lineage`.
The steps that read features (train, evaluate, score, materialize) call `fresh_features`
first, so features of other raw data are never used silently.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cadence.features import FeatureManifest, read_manifest
from cadence.flows import _fingerprint
from cadence.flows.settings import Settings


class StaleInput(ValueError):
    """A stage's input changed after it was built; the message names the command to run."""


def _when(stamp: dt.datetime | None) -> str:
    return f"{stamp.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if stamp else "at an unknown time"


def check_features(raw: Path, features_dir: Path) -> FeatureManifest:
    """The build's manifest, if the build was made from the raw tables `raw` holds now;
    `StaleInput` otherwise (MissingFeatures when there is no build)."""
    manifest = read_manifest(features_dir)
    if manifest.data_fingerprint is None or manifest.fingerprint is None:
        raise StaleInput(
            f"features are stale: {features_dir / 'manifest.json'} does not record which raw "
            "data they were built from; run `cadence features build`"
        )
    now = _fingerprint.files(raw)
    if now == manifest.data_fingerprint:
        return manifest
    held = f"it holds {now[:12]} now" if now else "it holds no tables now"
    raise StaleInput(
        f"features are stale: {raw} changed after they were built (built "
        f"{_when(manifest.built_at)} from raw data {manifest.data_fingerprint[:12]}; {held}); "
        "run `cadence features build`"
    )


def check_registry(features_dir: Path, feast_dir: Path, manifest: FeatureManifest) -> None:
    """`StaleInput` unless the Feast registry was applied from this very feature build."""
    from cadence.features._store import read_applied

    applied = read_applied(feast_dir)
    if applied is None:
        raise StaleInput(
            f"the Feast registry in {feast_dir} holds no feature build yet; "
            "run `cadence features apply`"
        )
    same_folder = Path(applied.features_dir) == Path(features_dir).resolve()
    if not same_folder or applied.fingerprint != manifest.fingerprint:
        raise StaleInput(
            f"the Feast registry is stale: {features_dir} changed after it was applied "
            f"(applied {_when(applied.applied_at)}, features built {_when(manifest.built_at)}); "
            "run `cadence features apply`"
        )


def fresh_features(settings: Settings) -> dict[str, str]:
    """Stops (`StaleInput`) when the workspace's features were built from other raw data than
    raw/ holds now; returns their lineage."""
    check_features(settings.raw_dir, settings.features_dir)
    return lineage(settings)


def lineage(settings: Settings) -> dict[str, str]:
    """The fingerprints of the raw data the workspace's features were built from and of the
    build itself, as the build recorded them ("" when it recorded none)."""
    manifest = read_manifest(settings.features_dir)
    return {"raw": manifest.data_fingerprint or "", "features": manifest.fingerprint or ""}
