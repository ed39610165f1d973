"""Baselines reported beside the model: a recency/frequency rule and BG/NBD."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from cadence.features._btyd import BTYDFitError, expected_orders, fit_bgnbd


def rule_score(frame: pd.DataFrame) -> np.ndarray:
    """Recent frequency, discounted by recency: what a marketer would rank by without a model."""
    since = frame["days_since_last_order"].fillna(365.0).to_numpy(float)
    return frame["orders_90d"].to_numpy(float) / (1.0 + since / 30.0)


def rfm_summary(orders: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """BG/NBD's inputs as of t: repeat purchase days, recency and age (days), per user."""
    o = orders[orders.ordered_at < t]
    day = o.ordered_at.dt.floor("D")
    d = pd.DataFrame({"user_id": o.user_id, "day": day}).drop_duplicates()
    g = d.groupby("user_id").day
    first, last, n = g.min(), g.max(), g.size()
    return pd.DataFrame(
        {
            "frequency": (n - 1).astype(float),
            "recency": (last - first).dt.days.astype(float),
            "T": ((t - first).dt.total_seconds() / 86400).astype(float),
        }
    )


class BGNBD:
    """BG/NBD (`cadence.features._btyd`, the fitter `lifetimes` cross-checks), with P(at least
    one order in h days) from its expected count (Poisson), then isotonic calibration on the
    calibration slice like the model gets."""

    def __init__(self, horizon_days: int, penalizer: float = 0.001) -> None:
        self.horizon_days = horizon_days
        self.penalizer = penalizer

    def fit(self, summary: pd.DataFrame) -> BGNBD:
        """Fits by maximum likelihood; where the optimiser finds no optimum, retries with a
        penalizer ten times larger (lifetimes' advice), up to three times. Raises
        `BTYDFitError` (a ValueError) when the history cannot identify the model at all."""
        penalizer = self.penalizer
        for attempt in range(4):
            try:
                fit = fit_bgnbd(
                    summary.frequency, summary.recency, summary["T"], penalizer=penalizer
                )
            except BTYDFitError:
                if attempt == 3 or not (summary.frequency > 0).any():
                    raise
                penalizer *= 10
                continue
            self.params_ = fit.params
            self.penalizer_ = penalizer
            return self
        raise AssertionError("unreachable")

    def expected(self, summary: pd.DataFrame) -> np.ndarray:
        e = expected_orders(
            self.params_, self.horizon_days, summary.frequency, summary.recency, summary["T"]
        )
        return 1.0 - np.exp(-np.asarray(e, float))

    def calibrate(self, p: np.ndarray, y: np.ndarray) -> BGNBD:
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
        return self
