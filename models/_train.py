"""Training and evaluating the repurchase models on a time split, with baselines and the oracle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from cadence.features._orders import CYCLE_CATEGORIES
from cadence.models import _model_code
from cadence.models._baselines import BGNBD, rfm_summary, rule_score
from cadence.models._estimators import BTYDPropensity, Propensity, Timing, select_propensity
from cadence.models._labels import label_rows
from cadence.models._metrics import classification_metrics, timing_metrics
from cadence.models._split import TimeSplit, time_split
from cadence.models._uncertainty import DEFAULT_RESAMPLES, paired_bootstrap, segment_metrics

# A replenishment overdue by more than this has probably ended (the child outgrew formula).
OVERDUE_DAYS = 10


class NotEnoughData(ValueError):
    """Too little data to train; the message says what is missing."""


def with_due_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds days until each replenishment falls due (mean gap minus days since), and the
    nearest of them: differences a tree cannot form from the two columns by itself."""
    return _model_code.with_due_dates(frame, CYCLE_CATEGORIES, overdue_days=OVERDUE_DAYS)


@dataclass
class Trained:
    """Both estimators, the catalogue features they read, and the split they were judged on;
    the due-date columns derive from the replenishment categories it was trained with.
    `selection` records how the propensity was chosen between the XGBoost hybrid and BG/NBD
    (`select_propensity`), or is None where no choice was made. `postprocess` is set only on a
    registered fairness-mitigated variant: its probabilities are the model's own."""

    propensity: Propensity | BTYDPropensity
    timing: Timing
    features: list[str]
    split: TimeSplit
    horizon_days: int
    cycle_categories: tuple[str, ...] = CYCLE_CATEGORIES
    overdue_days: float = OVERDUE_DAYS
    selection: dict[str, Any] | None = None
    # A fairness post-processor (`audits`' stored ThresholdOptimizer) deciding who is offered,
    # from the probability and a group label it is given; None for the model as trained.
    postprocess: dict[str, Any] | None = None

    def inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _model_code.model_inputs(
            frame, self.features, self.cycle_categories, overdue_days=self.overdue_days
        )

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """probability (of an order within the horizon), expected_days (to the next order, for
        a shopper who orders again) and its 80% interval."""
        return self.predict_inputs(self.inputs(frame))

    def matrix(self, X: pd.DataFrame) -> xgb.DMatrix:
        """The model inputs as one XGBoost matrix, to share between predictions."""
        return xgb.DMatrix(X, nthread=self.propensity.n_jobs)

    def predict_inputs(self, X: pd.DataFrame, dm: xgb.DMatrix | None = None) -> pd.DataFrame:
        dm = self.matrix(X) if dm is None else dm
        return _model_code.predictions(
            self.propensity.predict_proba(self._source(X, dm)),
            self.timing.predict(dm),
            half_width=self.timing.half_width_,
            index=X.index,
        )

    def contributions(
        self, X: pd.DataFrame, dm: xgb.DMatrix | None = None, *, exact: bool = True
    ) -> np.ndarray:
        """Each input's SHAP contribution to the propensity's log-odds, one column per input."""
        dm = self.matrix(X) if dm is None and self.propensity.kind == "xgboost" else dm
        return self.propensity.contributions(self._source(X, dm), exact=exact)

    def _source(self, X: pd.DataFrame, dm: xgb.DMatrix | None):
        """What the propensity reads: the XGBoost matrix, or the frame (BG/NBD reads a column)."""
        return dm if self.propensity.kind == "xgboost" else X


def prepare(
    features: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    end: pd.Timestamp,
    horizon_days: int,
    test: int,
    calibrate: int,
    min_buyers: int = 500,
) -> tuple[pd.DataFrame, TimeSplit]:
    """Labels every (user, snapshot) row and assigns it to a slice of the time split; refuses
    data with fewer than `min_buyers` distinct buyers."""
    buyers = orders.user_id.nunique()
    if buyers < min_buyers:
        raise NotEnoughData(f"{buyers} buyers in the orders; training needs at least {min_buyers}")
    snaps = sorted(features.snapshot_at.unique())
    try:
        split = time_split(
            snaps, end=end, horizon_days=horizon_days, test=test, calibrate=calibrate
        )
    except ValueError as exc:
        raise NotEnoughData(str(exc)) from exc
    return split_rows(features, orders, end, split), split


def split_rows(
    frame: pd.DataFrame, orders: pd.DataFrame, end: pd.Timestamp, split: TimeSplit
) -> pd.DataFrame:
    """Labels rows and assigns them to a given split's slices (for re-evaluating a model)."""
    h = split.horizon_days
    rows = label_rows(frame, orders, horizons=(h,), end=end)
    rows["slice"] = split.slice_of(rows.snapshot_at)
    return rows[rows.slice.notna() & rows[f"y_{h}d"].notna()]


def fit(
    rows: pd.DataFrame,
    feature_names: list[str],
    split: TimeSplit,
    *,
    seed: int = 0,
    n_jobs: int = 2,
    propensity: dict[str, Any] | None = None,
    timing: dict[str, Any] | None = None,
    select: bool = True,
) -> Trained:
    """Fits both estimators on the train slice and calibrates them on the calibration slice;
    `propensity` and `timing` are keyword arguments of `Propensity` and `Timing`.

    With `select`, the propensity is the XGBoost hybrid only where it beats BG/NBD on the
    calibration slice (`select_propensity`); otherwise BG/NBD itself, calibrated. BG/NBD is
    read from the btyd family's `btyd_orders_<horizon>d`; a build without it keeps the hybrid
    and the selection says why."""
    h = split.horizon_days
    train, cal = rows[rows.slice == "train"], rows[rows.slice == "calibrate"]
    y = f"y_{h}d"
    X, X_cal = with_due_dates(train[feature_names]), with_due_dates(cal[feature_names])
    y_cal = cal[y].to_numpy(int)
    prop = Propensity(seed=seed, n_jobs=n_jobs, **(propensity or {})).fit(
        X, train[y].to_numpy(int), X_cal, y_cal
    )
    selection = None
    if select:
        prop, selection = _select(prop, X_cal, y_cal, h, seed=seed, n_jobs=n_jobs)
    timing_model = Timing(seed=seed, n_jobs=n_jobs, **(timing or {})).fit(
        X,
        train.days_to_next.to_numpy(float),
        train.censored.to_numpy(),
        X_cal,
        cal.days_to_next.to_numpy(float),
        cal.censored.to_numpy(),
    )
    return Trained(prop, timing_model, feature_names, split, h, selection=selection)


def _select(
    hybrid: Propensity, X_cal: pd.DataFrame, y_cal: np.ndarray, h: int, *, seed: int, n_jobs: int
) -> tuple[Propensity | BTYDPropensity, dict[str, Any]]:
    feature = f"btyd_orders_{h}d"
    kept = {"chosen": "hybrid", "hybrid_best_iteration": hybrid.best_iteration_}
    if feature not in X_cal or X_cal[feature].isna().all():
        return hybrid, {
            **kept,
            "reason": f"no BG/NBD to compare with: the features lack {feature} (btyd family)",
        }
    btyd = BTYDPropensity(
        feature=feature, calibrations=hybrid.calibrations, n_jobs=n_jobs, seed=seed
    )
    try:
        btyd.fit(X_cal, y_cal)
    except ValueError as exc:  # no calibration keeps BG/NBD's ranking
        return hybrid, {**kept, "reason": f"BG/NBD could not be calibrated: {exc}"}
    chosen, record = select_propensity(hybrid, btyd, X_cal, y_cal)
    return chosen, {**record, "hybrid_best_iteration": hybrid.best_iteration_}


def evaluate(
    model: Trained,
    rows: pd.DataFrame,
    orders: pd.DataFrame,
    oracle: pd.DataFrame | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict]:
    """Metrics of the model and each baseline on the test slice (and of the oracle, if known),
    by segment, with bootstrap intervals."""
    return evaluate_scores(model, rows, orders, oracle, resamples=resamples, seed=seed)[0]


SCORERS = ("model", "bgnbd", "rule", "oracle")


def evaluate_scores(
    model: Trained,
    rows: pd.DataFrame,
    orders: pd.DataFrame,
    oracle: pd.DataFrame | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, dict], np.ndarray, dict[str, np.ndarray]]:
    """The report, the test labels, and each scorer's probabilities on the test rows.

    Besides one entry per scorer (`SCORERS`), the report holds `segments` (AUC and ECE of
    every scorer by `customer_segments`) and `intervals` (`paired_bootstrap` over the test
    customers, `resamples` times from `seed`)."""
    h = model.horizon_days
    y_col = f"y_{h}d"
    test, cal = rows[rows.slice == "test"], rows[rows.slice == "calibrate"]
    y = test[y_col].to_numpy(int)
    pred = model.predict(test)
    p = pred.probability.to_numpy()
    median, low, high = (pred[c].to_numpy() for c in ("expected_days", "days_low", "days_high"))
    report = {
        "model": {
            **classification_metrics(y, p),
            **timing_metrics(test.days_to_next, test.censored, median, low, high),
        }
    }
    # Shoppers on a replenishment cycle (a category bought at least three times, so it has a
    # gap history): the timing that marketing acts on.
    cyc = cycle_buyers(test).to_numpy()
    if cyc.any():
        t = timing_metrics(
            test.days_to_next[cyc], test.censored[cyc], median[cyc], low[cyc], high[cyc]
        )
        report["model"]["timing_mae_days_cycle"] = t["timing_mae_days"]
        report["model"]["interval_coverage_cycle"] = t["interval_coverage"]

    # The rule: ranked by recent frequency and recency, calibrated on the same slice.
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
    iso.fit(rule_score(cal), cal[y_col].to_numpy(int))
    scores = {"model": p, "rule": iso.predict(rule_score(test))}
    report["rule"] = classification_metrics(y, scores["rule"])
    # Its timing: the nearest replenishment due date, else the shopper's mean gap since the
    # last order, else the calibration slice's median time to the next order.
    due = rule_due_days(test, cal)
    report["rule"].update(timing_metrics(test.days_to_next, test.censored, due, due, due))
    del report["rule"]["interval_coverage"]
    if cyc.any():
        t = timing_metrics(test.days_to_next[cyc], test.censored[cyc], due[cyc], due[cyc], due[cyc])
        report["rule"]["timing_mae_days_cycle"] = t["timing_mae_days"]

    # BG/NBD: fitted on the history before the last training snapshot, calibrated likewise.
    bg = BGNBD(h).fit(rfm_summary(orders, max(model.split.train)))
    cal_p = _bgnbd_rows(bg, cal, orders)
    bg.calibrate(cal_p, cal[y_col].to_numpy(int))
    test_p = bg.calibrator_.predict(_bgnbd_rows(bg, test, orders))
    report["bgnbd"] = classification_metrics(y, test_p)
    scores["bgnbd"] = test_p

    if oracle is not None:
        o = test[["user_id", "snapshot_at"]].merge(
            oracle, on=["user_id", "snapshot_at"], how="left"
        )
        known = o[f"p_{h}d"].notna().to_numpy()
        if known.all():
            scores["oracle"] = o[f"p_{h}d"].to_numpy(float)
            report["oracle"] = classification_metrics(y, scores["oracle"])
            report["model"]["share_of_oracle_auc"] = (
                report["model"]["roc_auc"] / report["oracle"]["roc_auc"]
            )
    report["segments"] = segment_metrics(y, scores, customer_segments(test))
    report["intervals"] = paired_bootstrap(
        y, scores, test.user_id.to_numpy(), resamples=resamples, seed=seed
    )
    return report, y, scores


# Lapsed: no order for longer than this before the snapshot.
ACTIVE_DAYS = 90


def customer_segments(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks over the rows, as of each row's snapshot: one order vs repeat customers, and
    active (an order within `ACTIVE_DAYS`) vs lapsed. Rows of shoppers with no order yet
    belong to neither pair; a pair whose feature the build lacks is left out."""
    out: dict[str, np.ndarray] = {}
    if "orders_all" in rows:
        n = rows.orders_all.to_numpy(float)
        out["one_order"], out["repeat"] = n == 1, n > 1
    if "days_since_last_order" in rows:
        d = rows.days_since_last_order.to_numpy(float)
        out[f"active_{ACTIVE_DAYS}d"], out[f"lapsed_{ACTIVE_DAYS}d"] = (
            d <= ACTIVE_DAYS,
            d > ACTIVE_DAYS,
        )
    return out


def rule_due_days(rows: pd.DataFrame, cal: pd.DataFrame) -> np.ndarray:
    d = with_due_dates(rows)
    seen = cal.days_to_next[~cal.censored]
    fallback = float(seen.median()) if len(seen) else 30.0
    due = pd.Series(np.nan, index=rows.index)
    for col in ("next_due_in_days", "gap_due_in_days"):
        if col in d:
            due = due.fillna(d[col].where(d[col] > -OVERDUE_DAYS))
    return due.fillna(fallback).clip(lower=0.5).to_numpy(float)


def cycle_buyers(rows: pd.DataFrame) -> pd.Series:
    cols = [f"{c}_gap_mean" for c in CYCLE_CATEGORIES if f"{c}_gap_mean" in rows]
    return rows[cols].notna().any(axis=1) if cols else pd.Series(False, index=rows.index)


def _bgnbd_rows(bg: BGNBD, rows: pd.DataFrame, orders: pd.DataFrame) -> np.ndarray:
    out = np.zeros(len(rows))
    for t, idx in rows.groupby("snapshot_at").indices.items():
        summary = rfm_summary(orders, t)
        users = rows.user_id.to_numpy()[idx]
        s = summary.reindex(users)
        have = s.frequency.notna().to_numpy()
        p = np.zeros(len(users))
        if have.any():
            p[have] = bg.expected(s[have])
        out[idx] = p
    return out
