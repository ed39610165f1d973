"""The propensity estimator's guards for sparse logs: monotone constraints by feature name,
early stopping on the calibration slice, and regularisation that grows on small training sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from cadence.models._estimators import Propensity
from tests.models._synthetic import replenishment_rows

pytestmark = pytest.mark.unit

SMALL = {"n_estimators": 60, "n_jobs": 1, "calibrations": ("platt",)}


def _rows_with_a_bump(seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """Train and calibration rows where buying peaks at 3 orders in 30 days and falls after:
    a shape only an unconstrained booster follows."""
    rows, _, features = replenishment_rows({}, users=300, seed=seed)
    rng = np.random.default_rng(seed)
    rows["orders_30d"] = rng.integers(0, 9, len(rows)).astype(float)
    bump = np.where(rows.orders_30d <= 3, rows.orders_30d, 6 - rows.orders_30d)
    rows["y"] = (rng.random(len(rows)) < 1 / (1 + np.exp(-(bump - 1.5)))).astype(int)
    columns = [*features, "orders_30d"]
    train, cal = rows[rows.slice == "train"], rows[rows.slice == "calibrate"]
    return train[columns], train.y, cal[columns], cal.y


def _along_orders_30d(model: Propensity, X: pd.DataFrame) -> np.ndarray:
    """Calibrated predictions for 100 rows as orders_30d runs 0..12, everything else fixed:
    one row per shopper, one column per count."""
    base = X.head(100)
    grid = [base.assign(orders_30d=float(k)) for k in range(13)]
    return np.column_stack([model.predict_proba(g) for g in grid])


def test_monotone_constraints_hold_by_name_and_skip_absent_features():
    X, y, X_cal, y_cal = _rows_with_a_bump()
    monotone = {"orders_30d": 1, "days_since_last_order": -1, "btyd_p_alive": 1}
    fitted = Propensity(**SMALL, monotone=monotone).fit(X, y, X_cal, y_cal)
    assert fitted.monotone_ == {"orders_30d": 1, "days_since_last_order": -1}
    p = _along_orders_30d(fitted, X)
    assert (np.diff(p, axis=1) >= -1e-12).all()
    since = np.column_stack(
        [fitted.predict_proba(X.head(100).assign(days_since_last_order=d)) for d in range(0, 80, 5)]
    )
    assert (np.diff(since, axis=1) <= 1e-12).all()
    # Unconstrained, the booster follows the bump: the check above can fail.
    free = Propensity(**SMALL).fit(X, y, X_cal, y_cal)
    assert (np.diff(_along_orders_30d(free, X), axis=1) < -1e-3).any()


def test_early_stopping_keeps_fewer_trees_on_noise_and_stores_only_those():
    """Noise but for a faint trace of f0, so the calibration still has a ranking to keep."""
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(3000, 5)), columns=[f"f{i}" for i in range(5)])
    X_cal = pd.DataFrame(rng.normal(size=(1500, 5)), columns=X.columns)
    y, y_cal = (
        (rng.random(len(d)) < 1 / (1 + np.exp(1.4 - 0.3 * d.f0))).astype(int) for d in (X, X_cal)
    )
    ceiling = {**SMALL, "n_estimators": 200, "learning_rate": 0.3, "calibrations": ("isotonic",)}
    fitted = Propensity(**ceiling, early_stopping_rounds=10).fit(X, y, X_cal, y_cal)
    booster = fitted.model_.get_booster()
    assert fitted.best_iteration_ < 50
    assert booster.num_boosted_rounds() == fitted.best_iteration_ + 1
    # The stored booster, reloaded, predicts what the fitted estimator predicts.
    stored = xgb.Booster()
    stored.load_model(bytearray(booster.save_raw("ubj")))
    reloaded = Propensity.from_stored(stored, fitted.calibration_, **ceiling)
    assert reloaded.best_iteration_ == fitted.best_iteration_
    np.testing.assert_array_equal(reloaded.predict_proba(X_cal), fitted.predict_proba(X_cal))
    # Without early stopping every tree is kept.
    full = Propensity(**ceiling).fit(X, y, X_cal, y_cal)
    assert full.model_.get_booster().num_boosted_rounds() == 200 and full.best_iteration_ == 199


def test_regularisation_grows_only_below_the_reference():
    model = Propensity(reference_buyers=10_000)
    assert model.regularisation_scale(40_000) == 1.0
    assert model.regularisation_scale(2_500) == pytest.approx(2.0)
    assert Propensity().regularisation_scale(10) == 1.0
    X, y, X_cal, y_cal = _rows_with_a_bump()
    fitted = Propensity(**SMALL, reference_buyers=100 * int(y.sum())).fit(X, y, X_cal, y_cal)
    assert fitted.regularisation_scale_ == pytest.approx(10.0)
    params = fitted.model_.get_xgb_params()
    assert params["min_child_weight"] == pytest.approx(50.0)
    assert params["reg_lambda"] == pytest.approx(10.0)
