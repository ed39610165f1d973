"""The routing models as MLflow stores and serves them; MLflow logs this very file as the model.

A registered `routing` model is this code and four artifacts in open formats: `cost.ubj` (the
parcel's shipping cost, on the log1p scale when `settings["cost_scale"]` says so),
`delivery.ubj` (days from the dispatch wave's cut-off to delivery, one output per quantile),
`damage.ubj` (the chance the parcel arrives damaged) and `settings.json` (features, quantiles,
thread count). Like the repurchase model's code, it imports only numpy, pandas, xgboost and
mlflow, never `cadence`, so a registered model carries its own copy of the prediction maths
and nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc import PythonModel

FORMAT = 1
BOOSTERS = ("cost", "delivery", "damage")
FILES = {**{b: f"{b}.ubj" for b in BOOSTERS}, "settings": "settings.json"}


class Stored(NamedTuple):
    cost: xgb.Booster
    delivery: xgb.Booster
    damage: xgb.Booster
    settings: dict[str, Any]


def write(directory: Path, stored: Stored) -> dict[str, str]:
    paths = {name: str(Path(directory) / file) for name, file in FILES.items()}
    for name in BOOSTERS:
        getattr(stored, name).save_model(paths[name])
    Path(paths["settings"]).write_text(json.dumps({"format": FORMAT, **stored.settings}, indent=1))
    return paths


def read(paths: Mapping[str, str]) -> Stored:
    settings = json.loads(Path(paths["settings"]).read_text())
    if settings.pop("format", None) != FORMAT:
        raise ValueError(f"settings.json is not format {FORMAT}; this code cannot read it")
    boosters = []
    for name in BOOSTERS:
        booster = xgb.Booster(model_file=paths[name])
        booster.set_param({"nthread": settings["n_jobs"]})
        boosters.append(booster)
    return Stored(*boosters, settings)


def predict(stored: Stored, frame: pd.DataFrame) -> pd.DataFrame:
    """Per row: predicted cost, delivery days after the cut-off at each quantile (columns
    `days_q50`, `days_q90`, ...; never decreasing across quantiles), and damage chance."""
    return pd.DataFrame(predict_matrix(stored, matrix(stored, frame)), index=frame.index)


def matrix(stored: Stored, columns) -> np.ndarray:
    """The models' input rows as one float32 array (rows, features), row by row in memory as
    XGBoost reads it. `columns` maps each feature to its values: a frame, or a dict of arrays."""
    features = stored.settings["features"]
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValueError(
            f"the routing model needs {len(missing)} column(s) the frame lacks: {missing[:5]}"
        )
    n = len(columns[features[0]]) if features else 0
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        x[:, j] = np.asarray(columns[f], dtype=np.float64)
    return x


def predict_matrix(stored: Stored, x: np.ndarray) -> dict[str, np.ndarray]:
    """`predict` on a `matrix`: the same columns, as a dict of arrays."""
    s = stored.settings
    cost = stored.cost.inplace_predict(x)
    if s.get("cost_scale") == "log1p":
        cost = np.expm1(cost)
    out = {"cost": np.maximum(cost, 0.0)}
    days = np.asarray(stored.delivery.inplace_predict(x))
    days = days.reshape(x.shape[0], -1) if x.shape[0] else days.reshape(0, len(s["quantiles"]))
    # Quantile outputs are fitted apart and may cross; sorting keeps them a distribution.
    days = np.maximum(np.sort(days, axis=1), 0.0)
    for i, q in enumerate(s["quantiles"]):
        out[quantile_column(q)] = days[:, i]
    out["damage"] = stored.damage.inplace_predict(x)
    return out


def quantile_column(q: float) -> str:
    return f"days_q{round(q * 100):02d}"


class RoutingModel(PythonModel):
    def load_context(self, context) -> None:
        self.stored = read(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict(self.stored, model_input)


if __name__ != "cadence.models._route_code":
    mlflow.models.set_model(RoutingModel())
