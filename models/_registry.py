"""MLflow tracking and the model registry: runs, the `repurchase` model, aliases and gates.

A trained model is logged as a pyfunc with its signature and an input example, registered, and
given the alias `challenger`. Promotion to `champion` runs every registered gate (a list of
checks; the fairness audit adds its own) and records the reason as tags on the version;
rollback moves `champion` back to the version it replaced. Downstream code loads
`models:/<name>@champion`, never a path.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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

from models._train import Trained

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
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        location = (db.parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


class RepurchasePyfunc(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a `Trained` model: features in, probability and timing out."""

    def __init__(self, trained: Trained) -> None:
        self.trained = trained

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.trained.predict(model_input)


def _flat_metrics(report: dict[str, dict]) -> dict[str, float]:
    return {
        f"{name}.{key}": float(value)
        for name, metrics in report.items()
        for key, value in metrics.items()
        if isinstance(value, int | float)
    }


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
    from mlflow.models import infer_signature

    pyfunc = RepurchasePyfunc(trained)
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
        mlflow.log_metrics(_flat_metrics(report))
        mlflow.log_dict(report, "evaluation.json")
        mlflow.log_dict(curves, "curves.json")
        mlflow.log_text(importances.to_csv(index=False), "feature_importance.csv")
        for file, fig in figures.items():
            mlflow.log_figure(fig, file)
        signature = infer_signature(example, pyfunc.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc,
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in {**tags, "run_id": run.info.run_id}.items():
        client.set_model_version_tag(name, version, key, value)
    return run.info.run_id, version


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}"
        for pkg in ("mlflow", "xgboost-cpu", "scikit-learn", "pandas", "numpy", "scipy")
    ]


def load(uri: str) -> Trained:
    """The `Trained` model behind a models:/ or runs:/ URI."""
    model = mlflow.pyfunc.load_model(uri)
    return model.unwrap_python_model().trained


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


# --- promotion gates ------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    detail: str


@dataclass
class Candidate:
    """What a gate sees: the challenger and the champion, evaluated on the same test rows."""

    name: str
    version: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    test_window: str
    conf: dict[str, Any]


Gate = Callable[[Candidate], GateResult]
GATES: dict[str, Gate] = {}


def register_gate(name: str) -> Callable[[Gate], Gate]:
    """Adds a check every promotion must pass (the fairness audit registers one)."""

    def add(gate: Gate) -> Gate:
        GATES[name] = gate
        return gate

    return add


@register_gate("beats_champion")
def _beats_champion(c: Candidate) -> GateResult:
    margin = float(c.conf["margin_roc_auc"])
    auc = c.metrics["roc_auc"]
    if c.champion_metrics is None:
        return GateResult("beats_champion", True, f"no champion yet; ROC AUC {auc:.4f}")
    best = c.champion_metrics["roc_auc"]
    ok = auc >= best + margin
    return GateResult(
        "beats_champion",
        ok,
        f"ROC AUC {auc:.4f} vs champion v{c.champion_version} {best:.4f} on {c.test_window} "
        f"(needs +{margin})",
    )


@register_gate("calibrated")
def _calibrated(c: Candidate) -> GateResult:
    limit = float(c.conf["max_ece"])
    value = c.metrics["ece"]
    return GateResult("calibrated", value <= limit, f"ECE {value:.4f} (at most {limit})")


def run_gates(candidate: Candidate) -> list[GateResult]:
    return [gate(candidate) for gate in GATES.values()]


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
