"""The repurchase model as MLflow stores and serves it; MLflow logs this very file as the model.

A registered model is this code (MLflow's models from code) and four artifacts in open formats:
`propensity.ubj` and `timing.ubj` (XGBoost's own format), `calibration.json` (the calibration
chosen on the calibration slice: its method, its coefficients or thresholds, and every
candidate's cross-validated log loss) and `settings.json` (features, horizon, split, interval
width, the replenishment categories behind the due-date columns). A model whose propensity is
BG/NBD itself (`settings["propensity_kind"] == "btyd"`, chosen when the XGBoost hybrid did not
beat it on the calibration slice) has no `propensity.ubj`: its log-odds come from one feature,
BG/NBD's expected orders in the horizon (`btyd_margin`), and the same calibration follows.
Nothing is pickled, so renaming the project's modules cannot break a registered model. That is
also why this file imports only numpy, pandas, xgboost and mlflow, never `cadence`: the
project's estimators call the functions below, so the prediction maths exists once, and a
registered model carries its own copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc import PythonModel

FORMAT = 1  # of settings.json; a reader meeting a later one refuses rather than guesses
FILES = {
    "propensity": "propensity.ubj",
    "timing": "timing.ubj",
    "calibration": "calibration.json",
    "settings": "settings.json",
}


def with_due_dates(
    frame: pd.DataFrame, categories: Iterable[str], *, overdue_days: float
) -> pd.DataFrame:
    """Adds days until each replenishment falls due (mean gap minus days since), and the
    nearest of them not overdue by more than `overdue_days`: differences a tree cannot form
    from the two columns by itself."""
    out = frame.copy()
    due = []
    for c in categories:
        if f"{c}_gap_mean" in frame and f"{c}_days_since" in frame:
            out[f"{c}_due_in_days"] = frame[f"{c}_gap_mean"] - frame[f"{c}_days_since"]
            due.append(out[f"{c}_due_in_days"])
    if due:
        d = pd.concat(due, axis=1)
        out["next_due_in_days"] = d.where(d > -overdue_days).min(axis=1)
    if "gap_mean" in frame and "days_since_last_order" in frame:
        out["gap_due_in_days"] = frame["gap_mean"] - frame["days_since_last_order"]
    return out


def model_inputs(
    frame: pd.DataFrame, features: list[str], categories: Iterable[str], *, overdue_days: float
) -> pd.DataFrame:
    """The features the model reads, in its order, with the due-date columns derived."""
    missing = [f for f in features if f not in frame]
    if missing:
        raise ValueError(
            f"the model needs {len(missing)} feature(s) the frame lacks: {missing[:5]}"
        )
    return with_due_dates(frame[features], categories, overdue_days=overdue_days)


# The calibrations a model may use, simplest first (a tie goes to the simpler one).
CALIBRATIONS = ("platt", "beta", "isotonic")
# Platt and beta calibration stop their log-odds here, so a probability is never exactly 0 or 1
# (a float64 logistic rounds to 1.0 from about 36.7); +/-30 is a probability of 1e-13 from either.
LOGIT_BOUND = 30.0


def expit(z: np.ndarray) -> np.ndarray:
    # Log-odds beyond +/-700 would overflow exp; their probability is 0 or 1 in float64 anyway.
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700.0, 700.0)))


def beta_inputs(margin: np.ndarray) -> np.ndarray:
    """ln(s) and -ln(1 - s) of the booster's probability s, computed from its log-odds without
    rounding s to 0 or 1 first: beta calibration is a logistic regression on these two."""
    m = np.asarray(margin, float)
    return np.column_stack([-np.logaddexp(0.0, -m), np.logaddexp(0.0, m)])


def calibrated(margin: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """The calibrated probability from the booster's log-odds (`output_margin`).

    `platt`: a logistic in the log-odds, coef (a, b). `beta`: a logistic in ln(s) and -ln(1-s)
    of the booster's probability s, coef (a, b, c). `isotonic`: the booster's probability
    interpolated between thresholds `x` -> `y` and clipped outside them, which is what
    scikit-learn's `IsotonicRegression(out_of_bounds="clip").predict` computes; a
    calibration without a method (models stored before there was a choice) is isotonic.
    """
    m = np.asarray(margin, float)
    method = calibration.get("method", "isotonic")
    if method == "isotonic":
        return np.interp(expit(m), np.asarray(calibration["x"], float), calibration["y"])
    coef = np.asarray(calibration["coef"], float)
    if method == "platt":
        z = coef[0] * m + coef[1]
    elif method == "beta":
        z = beta_inputs(m) @ coef[:2] + coef[2]
    else:
        raise ValueError(f"calibration method {method!r}: expected one of {CALIBRATIONS}")
    return expit(np.clip(z, -LOGIT_BOUND, LOGIT_BOUND))


# The propensity's kinds: the XGBoost hybrid, or BG/NBD alone (settings["btyd_feature"]).
KINDS = ("xgboost", "btyd")
# Expected orders below this count as this: the log-odds of nothing at all would be -inf.
_LEAST_EXPECTED = 1e-12


def btyd_margin(expected_orders: np.ndarray) -> np.ndarray:
    """The log-odds of at least one order when `expected_orders` arrive as a Poisson count,
    logit(1 - exp(-e)) = log(expm1(e)); a shopper without a value (no order yet, or a snapshot
    too small to fit) counts as expecting none."""
    e = np.nan_to_num(np.asarray(expected_orders, float), nan=0.0)
    return np.log(np.expm1(np.clip(e, _LEAST_EXPECTED, 700.0)))


def interval(median: np.ndarray, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """The 80% interval around the AFT model's median days, `half_width` wide in log days."""
    return median * np.exp(-half_width), median * np.exp(half_width)


def predictions(
    probability: np.ndarray, expected_days: np.ndarray, *, half_width: float, index: pd.Index
) -> pd.DataFrame:
    """probability (of an order within the horizon), expected_days (to the next order, for a
    shopper who orders again) and its 80% interval."""
    low, high = interval(expected_days, half_width)
    return pd.DataFrame(
        {
            "probability": probability,
            "expected_days": expected_days,
            "days_low": low,
            "days_high": high,
        },
        index=index,
    )


class Stored(NamedTuple):
    """Everything a registered model holds besides this code (no propensity booster when the
    propensity is BG/NBD's)."""

    propensity: xgb.Booster | None
    timing: xgb.Booster
    calibration: dict[str, Any]
    settings: dict[str, Any]


def write(directory: Path, stored: Stored) -> dict[str, str]:
    """Writes the artifacts into `directory`; returns their paths by artifact name."""
    paths = {name: str(Path(directory) / file) for name, file in FILES.items()}
    if stored.propensity is None:
        del paths["propensity"]
    else:
        stored.propensity.save_model(paths["propensity"])
    stored.timing.save_model(paths["timing"])
    Path(paths["calibration"]).write_text(json.dumps(stored.calibration))
    Path(paths["settings"]).write_text(json.dumps({"format": FORMAT, **stored.settings}, indent=1))
    return paths


def read(paths: Mapping[str, str]) -> Stored:
    """The artifacts at `paths` (by artifact name), as `write` left them."""
    settings = json.loads(Path(paths["settings"]).read_text())
    if settings.pop("format", None) != FORMAT:
        raise ValueError(f"settings.json is not format {FORMAT}; this code cannot read it")
    kind = settings.setdefault("propensity_kind", "xgboost")  # stored before there was a choice
    if kind not in KINDS:
        raise ValueError(f"propensity kind {kind!r}: this code knows {KINDS}")
    boosters: list[xgb.Booster | None] = []
    for name in ("propensity", "timing"):
        if name == "propensity" and kind == "btyd":
            boosters.append(None)
            continue
        booster = xgb.Booster(model_file=paths[name])
        booster.set_param({"nthread": settings["n_jobs"]})
        boosters.append(booster)
    calibration = json.loads(Path(paths["calibration"]).read_text())
    calibration.setdefault("method", "isotonic")  # stored before there was a choice
    return Stored(*boosters, calibration, settings)


class RepurchaseModel(PythonModel):
    """Features in, probability and timing out: the frame `Trained.predict` returns."""

    def load_context(self, context) -> None:
        self.stored = read(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        s = self.stored.settings
        X = model_inputs(
            model_input, s["features"], s["cycle_categories"], overdue_days=s["overdue_days"]
        )
        dm = xgb.DMatrix(X, nthread=s["n_jobs"])
        if s["propensity_kind"] == "btyd":
            margin = btyd_margin(X[s["btyd_feature"]].to_numpy(float))
        else:
            margin = self.stored.propensity.predict(dm, output_margin=True)
        return predictions(
            calibrated(margin, self.stored.calibration),
            self.stored.timing.predict(dm),
            half_width=s["timing_half_width"],
            index=X.index,
        )


# MLflow runs this file under a name of its own to find the model; the project importing it
# for the functions above should not touch MLflow's state.
if __name__ != "cadence.models._model_code":
    mlflow.models.set_model(RepurchaseModel())
