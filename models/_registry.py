"""MLflow tracking and the model registry: runs, the `repurchase` model, aliases and gates.

A trained model is logged as a pyfunc from code (`_model_code`, with its boosters, calibration
and settings as artifacts in open formats, nothing pickled) with its signature and an input
example, registered, and given the alias `challenger`. Promotion to `champion` happens only when
every configured gate passed (`models._gates`) and records the reason as tags on the version;
rollback moves `champion` back to the version it replaced. Downstream code loads
`models:/<name>@champion`, never a path.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

with warnings.catch_warnings():
    # MLflow's own loaders warn about their type hints on import; nothing to act on.
    warnings.filterwarnings("ignore", message=".*type hint is inferred as AnyType")
    import mlflow.pyfunc

from cadence.models import _model_code
from cadence.models._estimators import BTYDPropensity, Propensity, Timing
from cadence.models._gates import Candidate, GateResult
from cadence.models._model_code import Stored
from cadence.models._split import TimeSplit
from cadence.models._train import Trained

EXPERIMENT = "repurchase"
CHALLENGER, CHAMPION = "challenger", "champion"


def model_name(horizon_days: int, default_horizon_days: int) -> str:
    """`repurchase` for the default horizon; other horizons get their own registered model, so
    a champion is only ever compared with a model answering the same question."""
    return "repurchase" if horizon_days == default_horizon_days else f"repurchase-{horizon_days}d"


def configure(home: Path, tracking_uri: str | None) -> str:
    """Points MLflow at the workspace's SQLite database (or the given server); returns the
    experiment id. On SQLite the experiment's artifacts live beside the database."""
    if tracking_uri is None:
        (home / "mlflow").mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{(home / 'mlflow' / 'mlflow.db').resolve()}"
    # MLflow also exports the URI as MLFLOW_TRACKING_URI for subprocesses; that variable is the
    # user's own setting here, read when the next command or flow run starts, so it is put back
    # (a served process would otherwise carry one run's workspace into the next).
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        location = (db.parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


def _stored(trained: Trained) -> Stored:
    """A model's parts in open formats (see `_model_code`): boosters, thresholds, settings."""
    prop, timing, split = trained.propensity, trained.timing, trained.split
    settings = {
        "features": list(trained.features),
        "horizon_days": trained.horizon_days,
        "split": {
            name: [pd.Timestamp(t).isoformat() for t in getattr(split, name)]
            for name in ("train", "calibrate", "test")
        },
        "n_jobs": prop.n_jobs,
        "cycle_categories": list(trained.cycle_categories),
        "overdue_days": trained.overdue_days,
        "timing_half_width": timing.half_width_,
        "propensity_kind": prop.kind,
        "propensity_params": {f.name: getattr(prop, f.name) for f in fields(prop)},
        "timing_params": {f.name: getattr(timing, f.name) for f in fields(timing)},
        "selection": trained.selection,
    }
    if prop.kind == "btyd":
        settings["btyd_feature"] = prop.feature
    if trained.postprocess is not None:
        settings["postprocess"] = trained.postprocess
    return Stored(
        prop.model_.get_booster() if prop.kind == "xgboost" else None,
        timing.booster_,
        prop.calibration_,
        settings,
    )


def _restored(stored: Stored) -> Trained:
    s = stored.settings
    split = TimeSplit(
        *([pd.Timestamp(t) for t in s["split"][name]] for name in ("train", "calibrate", "test")),
        horizon_days=s["horizon_days"],
    )
    if s["propensity_kind"] == "btyd":
        propensity = BTYDPropensity.from_stored(stored.calibration, **s["propensity_params"])
    else:
        propensity = Propensity.from_stored(
            stored.propensity, stored.calibration, **s["propensity_params"]
        )
    return Trained(
        propensity,
        Timing.from_stored(stored.timing, s["timing_half_width"], **s["timing_params"]),
        features=s["features"],
        split=split,
        horizon_days=s["horizon_days"],
        cycle_categories=tuple(s["cycle_categories"]),
        overdue_days=s["overdue_days"],
        selection=s.get("selection"),
        postprocess=s.get("postprocess"),
    )


def _flat_metrics(report: dict[str, dict]) -> dict[str, float]:
    return {
        f"{name}.{key}": float(value)
        for name, metrics in report.items()
        for key, value in metrics.items()
        if isinstance(value, int | float)
    }


def _log_model(trained: Trained, example: pd.DataFrame, name: str) -> str:
    """Logs the model to the active run as a pyfunc from code and registers it under `name`;
    returns the new version."""
    from mlflow.models import infer_signature

    signature = infer_signature(example, trained.predict(example))
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_model_code.__file__,
            artifacts=_model_code.write(Path(tmp), _stored(trained)),
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def log_and_register(
    trained: Trained,
    report: dict[str, dict],
    *,
    name: str,
    experiment_id: str,
    params: dict[str, Any],
    tags: dict[str, str],
    example: pd.DataFrame,
    figures: dict[str, Any],
    importances: pd.DataFrame,
    curves: dict[str, Any],
) -> tuple[str, str]:
    """Logs one training run and registers its model as `challenger`; returns (run, version)."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
        mlflow.log_metrics(_flat_metrics(report))
        mlflow.log_dict(report, "evaluation.json")
        mlflow.log_dict(curves, "curves.json")
        mlflow.log_text(importances.to_csv(index=False), "feature_importance.csv")
        for file, fig in figures.items():
            mlflow.log_figure(fig, file)
        version = _log_model(trained, example, name)
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in {**tags, "run_id": run.info.run_id}.items():
        client.set_model_version_tag(name, version, key, value)
    return run.info.run_id, version


def register_variant(
    base: str,
    variant: Trained,
    *,
    name: str,
    experiment_id: str,
    params: dict[str, Any],
    tags: dict[str, str],
    metrics: dict[str, float],
    example: pd.DataFrame,
) -> tuple[str, str]:
    """Registers a variant of version `base` (the same estimators, a post-processor added)
    as a new version with the alias `challenger`, from a run of its own; returns (run,
    version). The base version is tagged with the variant it led to."""

    client = MlflowClient()
    base_run = client.get_model_version(name, base).run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-v{base}-mitigated") as run:
        mlflow.log_params(params)
        mlflow.set_tags({**tags, "variant_of": f"v{base}", "variant_of_run": base_run or ""})
        mlflow.log_metrics(metrics)
        version = _log_model(variant, example, name)
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in {**tags, "variant_of": base, "run_id": run.info.run_id}.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_model_version_tag(name, base, "mitigated_as", version)
    return run.info.run_id, version


def _requirements() -> list[str]:
    """What the model's code imports, pinned; the project itself is not among them."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "xgboost-cpu", "pandas", "numpy")]


def load(uri: str) -> Trained:
    """The `Trained` model behind a models:/ or runs:/ URI, rebuilt from its artifacts."""
    model = mlflow.pyfunc.load_model(uri)
    return _restored(model.unwrap_python_model().stored)


def latest_version(name: str) -> str | None:
    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return max((str(v.version) for v in versions), key=int, default=None)


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def promote(candidate: Candidate, results: list[GateResult], note: str | None) -> bool:
    """Makes the candidate `champion` when every gate passed; records why either way."""
    client = MlflowClient()
    name, version = candidate.name, candidate.version
    passed = all(r.passed for r in results)
    reason = "; ".join(f"{r.gate}: {'pass' if r.passed else 'FAIL'} ({r.detail})" for r in results)
    if note:
        reason = f"{note} | {reason}"
    if not passed:
        client.set_model_version_tag(name, version, "promotion_refused_at", _now())
        client.set_model_version_tag(name, version, "promotion_refused_reason", reason)
        return False
    client.set_model_version_tag(name, version, "promoted_at", _now())
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    client.set_model_version_tag(
        name, version, "previous_champion", candidate.champion_version or ""
    )
    client.set_model_version_tag(name, version, "gates", json.dumps([r.__dict__ for r in results]))
    client.set_registered_model_alias(name, CHAMPION, version)
    if alias_version(name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return True


class RollbackError(ValueError):
    pass


def rollback(name: str, reason: str) -> tuple[str, str]:
    """Moves `champion` back to the version the current one replaced; returns (from, to)."""
    client = MlflowClient()
    current = alias_version(name, CHAMPION)
    if current is None:
        raise RollbackError(f"{name} has no champion to roll back")
    previous = client.get_model_version(name, current).tags.get("previous_champion", "")
    if not previous:
        raise RollbackError(f"{name} v{current} is the first champion; there is none before it")
    client.set_model_version_tag(name, current, "rolled_back_at", _now())
    client.set_model_version_tag(name, current, "rollback_reason", reason)
    client.set_model_version_tag(name, previous, "restored_at", _now())
    client.set_model_version_tag(name, previous, "restore_reason", reason)
    # The restored version keeps its own `previous_champion`, so a second rollback goes further.
    client.set_registered_model_alias(name, CHAMPION, previous)
    return current, previous
