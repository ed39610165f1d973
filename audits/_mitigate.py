"""Mitigation to compare: Fairlearn's `ThresholdOptimizer` on the model's own probabilities.

The post-processor learns, on the calibration slice, a threshold (or a mix of two) per group
so that the decisions meet a parity constraint (demographic parity or equalized odds). The
sensitive attribute enters only here, as the post-processor's group input; the model's
features stay as they were. Its decisions are randomised where a group's threshold is a
mix; each shopper's draw is fixed (a hash of the shopper's id), so a list scored twice makes
the same offers.

The fitted post-processor is kept as plain numbers (per group: the two threshold operations,
their mixing weights and, for equalized odds, the chance of a constant decision), so a
registered variant stores it as JSON; `offer_probability` applies that form and a test holds
it equal to Fairlearn's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator

# The label under which groups too small for thresholds of their own are fitted together.
POOLED = "smaller groups"


class _Scores(BaseEstimator):
    """The model's probabilities, already computed, as the estimator post-processing wraps:
    X's one column holds them."""

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X, y=None) -> _Scores:
        return self

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, float)[:, 0]


def fit_thresholds(
    y: np.ndarray,
    p: np.ndarray,
    groups: pd.Series,
    *,
    constraints: str,
    objective: str = "balanced_accuracy_score",
) -> ThresholdOptimizer:
    """ThresholdOptimizer fitted on (labels, probabilities, group labels). The default
    objective is balanced accuracy: at a buying rate well under one half, accuracy alone
    offers to few shoppers (only those more likely than not to buy)."""
    optimizer = ThresholdOptimizer(
        estimator=_Scores(),
        constraints=constraints,
        objective=objective,
        prefit=True,
        predict_method="predict",
    )
    return optimizer.fit(
        np.asarray(p, float)[:, None],
        np.asarray(y, int),
        sensitive_features=pd.Series(groups).astype(str).to_numpy(),
    )


def stored_form(optimizer: ThresholdOptimizer, *, attribute: str, fallback: float) -> dict:
    """The fitted post-processor as JSON-ready numbers. A group it was not fitted on takes
    the pooled smaller groups' rule when there is one, else the plain operating threshold
    `fallback`."""
    groups: dict[str, dict[str, Any]] = {}
    for group, rule in optimizer.interpolated_thresholder_.interpolation_dict.items():
        entry = {
            "p0": float(rule.p0),
            "operator0": rule.operation0.operator,
            "threshold0": float(rule.operation0.threshold),
            "p1": float(rule.p1),
            "operator1": rule.operation1.operator,
            "threshold1": float(rule.operation1.threshold),
        }
        if "p_ignore" in rule:
            entry["p_ignore"] = float(rule.p_ignore)
            entry["prediction_constant"] = float(rule.prediction_constant)
        groups[str(group)] = entry
    return {
        "attribute": attribute,
        "constraints": optimizer.constraints,
        "objective": optimizer.objective,
        "fallback_threshold": float(fallback),
        "groups": groups,
    }


def _apply(op: str, threshold: float, p: np.ndarray) -> np.ndarray:
    return (p > threshold) if op == ">" else (p < threshold)


def offer_probability(stored: dict, p: np.ndarray, groups: pd.Series) -> np.ndarray:
    """Each row's chance of an offer under the stored post-processor."""
    p = np.asarray(p, float)
    labels = pd.Series(groups).astype(str).to_numpy()
    rules = stored["groups"]
    if POOLED in rules:
        labels = np.where(np.isin(labels, list(rules)), labels, POOLED)
    out = (p >= stored["fallback_threshold"]).astype(float)
    for group, r in rules.items():
        here = labels == group
        q = p[here]
        mixed = r["p0"] * _apply(r["operator0"], r["threshold0"], q) + r["p1"] * _apply(
            r["operator1"], r["threshold1"], q
        )
        if "p_ignore" in r:
            mixed = r["p_ignore"] * r["prediction_constant"] + (1 - r["p_ignore"]) * mixed
        out[here] = mixed
    return out


def fixed_draw(user_ids: pd.Series, seed: int) -> np.ndarray:
    """A uniform number per shopper, the same every time for the same id and seed."""
    hashed = pd.util.hash_pandas_object(
        pd.Series(user_ids).astype(str), index=False, hash_key=f"{seed:016d}"[:16]
    )
    return (hashed.to_numpy() >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def decisions(stored: dict, p: np.ndarray, groups: pd.Series, user_ids: pd.Series, seed: int):
    """Offer or not per row: the shopper's fixed draw under their chance of an offer."""
    return fixed_draw(user_ids, seed) < offer_probability(stored, p, groups)
