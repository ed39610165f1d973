"""The workspace at a glance: raw data, feature build, Feast, models and the latest list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cadence.flows.settings import Settings


def _mtime(path: Path) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC) if path.exists() else None


def raw(settings: Settings) -> dict[str, Any] | None:
    from cadence.ingest import read_manifest

    manifest = read_manifest(settings.raw_dir)
    if manifest is None:
        return None
    return {
        "source": manifest.source,
        "window": f"{manifest.start.date() if manifest.start else '?'}..{manifest.end.date()}",
        "tables": manifest.tables,
        "written_at": manifest.written_at,
    }


def features(settings: Settings) -> dict[str, Any] | None:
    from cadence.features import MissingFeatures, read_manifest
    from cadence.flows.steps._lineage import StaleInput, check_features

    try:
        m = read_manifest(settings.features_dir)
    except MissingFeatures:
        return None
    # Stale by lineage, as train and score judge it: built from other raw tables than raw/
    # holds now (a timestamp cannot tell a re-import of the same file from a new one).
    try:
        check_features(settings.raw_dir, settings.features_dir)
        stale = False
    except StaleInput:
        stale = True
    return {
        "snapshots": len(m.snapshots),
        "first": m.snapshots[0].date() if m.snapshots else None,
        "last": m.snapshots[-1].date() if m.snapshots else None,
        "user_features": m.user_features,
        "rows": m.rows,
        "engine": m.engine,
        "built_at": m.built_at,
        "stale": stale,
    }


def feast(settings: Settings) -> dict[str, Any]:
    online = settings.feast_dir / "online.db"
    return {
        "registry_updated": _mtime(settings.feast_dir / "registry.db"),
        "online_store": settings.online_store,
        "online_updated": _mtime(online) if settings.online_store == "sqlite" else None,
    }


def models(settings: Settings) -> list[dict[str, Any]]:
    """Every registered version with its aliases and headline metrics; empty without MLflow."""
    from cadence.flows.steps.models import has_models

    if not has_models(settings):
        return []
    from mlflow import MlflowClient

    from cadence.models._registry import configure

    configure(settings.home, settings.mlflow_tracking_uri)
    client = MlflowClient()
    out = []
    for rm in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for v in client.search_model_versions(f"name = '{rm.name}'"):
            metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
            out.append(
                {
                    "name": rm.name,
                    "version": int(v.version),
                    "aliases": sorted(aliases.get(str(v.version), [])),
                    "roc_auc": metrics.get("model.roc_auc"),
                    "bgnbd_roc_auc": metrics.get("bgnbd.roc_auc"),
                    "ece": metrics.get("model.ece"),
                    # A routing model is judged on the days held out from its holdout_from.
                    "test_window": v.tags.get("test_window")
                    or (f"from {v.tags['holdout_from']}" if "holdout_from" in v.tags else None),
                    "audit": v.tags.get("audit_verdict"),
                }
            )
    return sorted(out, key=lambda r: (r["name"], r["version"]))


def latest_list(settings: Settings) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    # Each model's list runs sit under lists/<model>/, its newest behind the `latest` link.
    lists = (
        sorted(
            (p.resolve() for p in settings.lists_dir.glob("*/latest/scores.parquet")),
            key=lambda p: p.stat().st_mtime,
        )
        if settings.lists_dir.exists()
        else []
    )
    if not lists:
        return None
    path = lists[-1]
    return {
        "path": str(path.parent),
        "rows": pq.read_metadata(path).num_rows,
        "written_at": _mtime(path),
    }


def status(settings: Settings) -> dict[str, Any]:
    r = raw(settings)
    return {
        "workspace": str(settings.home.resolve()),
        "raw": r,
        "features": features(settings),
        "feast": feast(settings),
        "models": models(settings),
        "list": latest_list(settings),
    }
