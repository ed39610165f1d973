"""Training and evaluating the repurchase models on a time split, with baselines and the oracle."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features._orders import CYCLE_CATEGORIES
from models._baselines import BGNBD, rfm_summary, rule_score
from models._estimators import Propensity, Timing
from models._labels import label_rows
from models._metrics import classification_metrics, timing_metrics
from models._split import TimeSplit, time_split

MIN_BUYERS = 500


class NotEnoughData(ValueError):
    """Too little data to train; the message says what is missing."""


@dataclass
class Trained:
    propensity: Propensity
    timing: Timing
    features: list[str]
    split: TimeSplit
    horizon_days: int
    report: dict[str, dict] = field(default_factory=dict)


def prepare(
    features: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    end: pd.Timestamp,
    horizon_days: int,
    test: int,
    calibrate: int,
) -> tuple[pd.DataFrame, TimeSplit]:
    """Labels every (user, snapshot) row and assigns it to a slice of the time split."""
    buyers = orders.user_id.nunique()
    if buyers < MIN_BUYERS:
        raise NotEnoughData(f"{buyers} buyers in the orders; training needs at least {MIN_BUYERS}")
    snaps = sorted(features.snapshot_at.unique())
    try:
        split = time_split(
            snaps, end=end, horizon_days=horizon_days, test=test, calibrate=calibrate
        )
    except ValueError as exc:
        raise NotEnoughData(str(exc)) from exc
    rows = label_rows(features, orders, horizons=(horizon_days,), end=end)
    rows["slice"] = split.slice_of(rows.snapshot_at)
    rows = rows[rows.slice.notna() & rows[f"y_{horizon_days}d"].notna()]
    return rows, split


def fit(
    rows: pd.DataFrame,
    feature_names: list[str],
    split: TimeSplit,
    *,
    seed: int = 0,
    n_estimators: int = 400,
) -> Trained:
    h = split.horizon_days
    train, cal = rows[rows.slice == "train"], rows[rows.slice == "calibrate"]
    y = f"y_{h}d"
    prop = Propensity(seed=seed, n_estimators=n_estimators).fit(
        train[feature_names], train[y].to_numpy(int), cal[feature_names], cal[y].to_numpy(int)
    )
    timing = Timing(seed=seed).fit(
        train[feature_names],
        train.days_to_next.to_numpy(float),
        train.censored.to_numpy(),
        cal[feature_names],
        cal.days_to_next.to_numpy(float),
        cal.censored.to_numpy(),
    )
    return Trained(prop, timing, feature_names, split, h)


def evaluate(
    model: Trained,
    rows: pd.DataFrame,
    orders: pd.DataFrame,
    oracle: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """Metrics of the model and each baseline on the test slice (and of the oracle, if known)."""
    h = model.horizon_days
    y_col = f"y_{h}d"
    test, cal = rows[rows.slice == "test"], rows[rows.slice == "calibrate"]
    y = test[y_col].to_numpy(int)
    X = test[model.features]
    p = model.propensity.predict_proba(X)
    median = model.timing.predict(X)
    low, high = model.timing.interval(X)
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
    report["rule"] = classification_metrics(y, iso.predict(rule_score(test)))

    # BG/NBD: fitted on the history before the last training snapshot, calibrated likewise.
    bg = BGNBD(h).fit(rfm_summary(orders, max(model.split.train)))
    cal_p = _bgnbd_rows(bg, cal, orders)
    bg.calibrate(cal_p, cal[y_col].to_numpy(int))
    test_p = bg.calibrator_.predict(_bgnbd_rows(bg, test, orders))
    report["bgnbd"] = classification_metrics(y, test_p)

    if oracle is not None:
        o = test[["user_id", "snapshot_at"]].merge(
            oracle, on=["user_id", "snapshot_at"], how="left"
        )
        known = o[f"p_{h}d"].notna().to_numpy()
        if known.all():
            report["oracle"] = classification_metrics(y, o[f"p_{h}d"].to_numpy(float))
            report["model"]["share_of_oracle_auc"] = (
                report["model"]["roc_auc"] / report["oracle"]["roc_auc"]
            )
    return report


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
