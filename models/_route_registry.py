"""The `routing` model in MLflow: runs, registration, aliases, and its promotion gates.

Trained routing models are logged as a pyfunc from code (`_route_code`, boosters in XGBoost's
format) under the registered name `routing` and given the alias `challenger`, exactly as the
repurchase models are; `promote` and `rollback` (`_registry`) move `champion` the same way. The
gates compare challenger and champion on the same replayed days (`flows.steps.routing`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

from cadence.models import _route_code
from cadence.models._gates import Candidate, GateResult, register_gate
from cadence.models._registry import CHALLENGER

NAME = "routing"
EXPERIMENT = "routing"


def experiment() -> str:
    """The routing experiment's id (created beside the repurchase one)."""
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "xgboost-cpu", "pandas", "numpy")]


def log_and_register(
    stored: _route_code.Stored,
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    tables: dict[str, pd.DataFrame],
    tags: dict[str, str],
    example: pd.DataFrame,
) -> tuple[str, str]:
    """One training run, its model registered as `routing` with the alias `challenger`."""
    from mlflow.models import infer_signature

    with mlflow.start_run(experiment_id=experiment(), run_name=NAME) as run:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
        for name, table in tables.items():
            mlflow.log_text(table.to_csv(index=False), f"{name}.csv")
        signature = infer_signature(example, _route_code.predict(stored, example))
        with tempfile.TemporaryDirectory() as tmp:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_route_code.__file__,
                artifacts=_route_code.write(Path(tmp), stored),
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                registered_model_name=NAME,
            )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(NAME, CHALLENGER, version)
    for key, value in {**tags, "run_id": run.info.run_id}.items():
        client.set_model_version_tag(NAME, version, key, value)
    return run.info.run_id, version


def load(uri: str) -> _route_code.Stored:
    model = mlflow.pyfunc.load_model(uri)
    return model.unwrap_python_model().stored


@register_gate("routing_cheaper")
def _cheaper(c: Candidate) -> GateResult:
    cost = c.metrics["cost_per_order"]
    if c.champion_metrics is None:
        return GateResult("routing_cheaper", True, f"no champion yet; {cost:.3f} per order")
    best = c.champion_metrics["cost_per_order"]
    margin = float(c.conf["margin"])
    ok = cost <= best * (1 + margin)
    return GateResult(
        "routing_cheaper",
        ok,
        f"true cost per order {cost:.3f} vs champion v{c.champion_version} {best:.3f} on "
        f"{c.test_window} (at most +{margin:.1%})",
    )


@register_gate("routing_feasible")
def _feasible(c: Candidate) -> GateResult:
    v = int(c.metrics["capacity_violations"] + c.metrics["stock_violations"])
    return GateResult(
        "routing_feasible",
        v == 0,
        f"{int(c.metrics['capacity_violations'])} capacity and "
        f"{int(c.metrics['stock_violations'])} stock violations on {c.test_window}",
    )


@register_gate("routing_fairness")
def _fairness(c: Candidate) -> GateResult:
    drop = c.metrics["max_next_day_drop"]
    limit = float(c.conf["max_next_day_drop"])
    return GateResult(
        "routing_fairness",
        drop <= limit,
        f"largest fall in a group's next-day rate against nearest: {drop:.3f} "
        f"({(c.audit or {}).get('worst_group', 'no group')}; at most {limit})",
    )
