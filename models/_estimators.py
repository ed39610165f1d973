"""The repurchase estimators: calibrated XGBoost propensity and XGBoost AFT timing.

Both follow scikit-learn's contract: settings are the (dataclass) fields, `fit` learns and
returns self, learned attributes end in `_`. Their prediction maths lives in `_model_code`, the
file MLflow stores as the registered model's code; `from_stored` rebuilds a fitted estimator
from what that model holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from cadence.models._model_code import calibrated

Z80 = float(norm.ppf(0.9))  # half-width of a central 80% interval, in standard deviations


@dataclass(kw_only=True)
class _Trees:
    """The settings both gradient-boosted estimators share (`tree_method=hist`)."""

    n_estimators: int
    learning_rate: float
    max_depth: int = 5
    subsample: float = 0.8
    colsample_bytree: float = 0.4
    n_jobs: int = 2
    seed: int = 0


@dataclass(kw_only=True)
class Propensity(_Trees):
    """P(order within the horizon): XGBoost, then isotonic calibration on a later slice."""

    n_estimators: int = 200
    learning_rate: float = 0.1

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, X_cal: pd.DataFrame, y_cal: np.ndarray
    ) -> Propensity:
        self.model_ = xgb.XGBClassifier(
            tree_method="hist",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=5,
            n_jobs=self.n_jobs,
            random_state=self.seed,
            eval_metric="logloss",
        )
        self.model_.fit(X, y)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(self.raw(X_cal), y_cal)
        # Kept as its thresholds: a registered model interpolates them without scikit-learn.
        self.calibration_x_ = np.asarray(iso.X_thresholds_, float)
        self.calibration_y_ = np.asarray(iso.y_thresholds_, float)
        return self

    @classmethod
    def from_stored(
        cls,
        booster: xgb.Booster,
        calibration_x: np.ndarray,
        calibration_y: np.ndarray,
        **params,
    ) -> Propensity:
        """The fitted estimator behind a stored booster and calibration thresholds."""
        self = cls(**params)
        self.model_ = xgb.XGBClassifier(n_jobs=self.n_jobs)
        self.model_.load_model(bytearray(booster.save_raw("ubj")))
        self.calibration_x_ = np.asarray(calibration_x, float)
        self.calibration_y_ = np.asarray(calibration_y, float)
        return self

    def raw(self, X: pd.DataFrame | xgb.DMatrix) -> np.ndarray:
        if isinstance(X, xgb.DMatrix):  # built once by the caller for several predictions
            return self.model_.get_booster().predict(X)
        return self.model_.predict_proba(X)[:, 1]

    def predict_proba(self, X: pd.DataFrame | xgb.DMatrix) -> np.ndarray:
        return calibrated(self.raw(X), self.calibration_x_, self.calibration_y_)

    def importances(self) -> pd.DataFrame:
        """Total gain per feature, largest first (features never split on have none)."""
        gain = self.model_.get_booster().get_score(importance_type="total_gain")
        frame = pd.DataFrame({"feature": list(gain), "total_gain": list(gain.values())})
        return frame.sort_values("total_gain", ascending=False, ignore_index=True)

    def contributions(self, X: pd.DataFrame | xgb.DMatrix, *, exact: bool = True) -> np.ndarray:
        """Per-feature contributions to the raw log-odds, from XGBoost's own `pred_contribs`:
        exact TreeSHAP, or with `exact=False` the path-based approximation (Saabas). On the
        default world's model the approximation was 25 times faster and named the same first
        driver for 89% of 10,000 shoppers, but only 80% of the top three in common."""
        dm = X if isinstance(X, xgb.DMatrix) else xgb.DMatrix(X, nthread=self.n_jobs)
        booster = self.model_.get_booster()
        return booster.predict(dm, pred_contribs=True, approx_contribs=not exact)[:, :-1]


@dataclass(kw_only=True)
class Timing(_Trees):
    """Days to the next order of a shopper who orders again, respecting censoring: XGBoost
    with the `survival:aft` loss.

    A row still waiting at the data's end is censored at that wait. One that has waited more
    than `lapsed_after_days` is taken for a shopper who has left (a cure model's "cured"
    share): whether they come back at all is the propensity model's question, and counting
    them as merely late would push every similar shopper's expected date out. The 80%
    interval's width is fitted on the calibration slice (the share of observed next orders
    inside it is set to 80% there), not taken from the loss's scale parameter.
    """

    n_estimators: int = 100
    learning_rate: float = 0.08
    sigma: float = 0.3
    lapsed_after_days: float | None = 90

    def fit(
        self,
        X: pd.DataFrame,
        days: np.ndarray,
        censored: np.ndarray,
        X_cal: pd.DataFrame,
        days_cal: np.ndarray,
        censored_cal: np.ndarray,
    ) -> Timing:
        days = np.maximum(np.asarray(days, float), 1e-3)
        censored = np.asarray(censored, bool)
        if self.lapsed_after_days is not None:
            keep = ~(censored & (days > self.lapsed_after_days))
            X, days, censored = X[keep], days[keep], censored[keep]
        upper = np.where(censored, np.inf, days)
        dtrain = xgb.DMatrix(X)
        dtrain.set_float_info("label_lower_bound", days)
        dtrain.set_float_info("label_upper_bound", upper)
        params = {
            "objective": "survival:aft",
            "aft_loss_distribution": "normal",
            "aft_loss_distribution_scale": self.sigma,
            "tree_method": "hist",
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "nthread": self.n_jobs,
            "seed": self.seed,
            "eval_metric": "aft-nloglik",
        }
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators)
        seen = ~np.asarray(censored_cal, bool)
        pred = self.predict(X_cal)[seen]
        ratio = np.abs(np.log(np.maximum(np.asarray(days_cal, float)[seen], 1e-3) / pred))
        self.half_width_ = float(np.quantile(ratio, 0.8)) if ratio.size else Z80 * self.sigma
        return self

    @classmethod
    def from_stored(cls, booster: xgb.Booster, half_width: float, **params) -> Timing:
        """The fitted estimator behind a stored booster and interval half-width."""
        self = cls(**params)
        self.booster_ = booster
        self.half_width_ = float(half_width)
        return self

    def predict(self, X: pd.DataFrame | xgb.DMatrix) -> np.ndarray:
        """Median days to the next order."""
        dm = X if isinstance(X, xgb.DMatrix) else xgb.DMatrix(X, nthread=self.n_jobs)
        return self.booster_.predict(dm)
