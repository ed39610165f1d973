"""Cadence's own customer value model: XGBoost on the feature rows (one per shopper and
snapshot) predicting the spend realised in the `horizon` days after the snapshot.

Point-in-time: the features at snapshot t see only events before t; the label of a row at t is
the spend in [t, t + horizon), so a model judged at an as-of date trains only on snapshots whose
window ends by then (`training_rows`). The loss is Tweedie (log link, variance power 1.5): spend
is zero for most shoppers and skewed for the rest, and the Tweedie mean is the expected spend, so
totals add up. Squared error on log1p(spend) is kept as an option (`objective="log1p"`) but
lost where measured: it predicts a geometric mean, 46-48% of the simulated world's realised
90-day totals (Tweedie: 90-105%), and on CDNOW's sample, one cohort whose tenure at the as-of
date lies beyond every training row, it extrapolated to 12 times the realised total (Tweedie:
1.15 times), with a Spearman correlation of -0.10 (Tweedie: 0.39).

Boosting stops early on the latest training snapshots (`validation_share` of them); the model
is then refitted on every training row with that many trees, so the latest rows count too.
At most `MAX_ROWS` rows train it, with a learning rate of 0.1: on the default world that took
the report from 69 s to 22 s (2 cores) with the 90-day MAE at 49.8 against 50.0, and on CDNOW's
master from 24 s to 14 s with the MAE at 10.55 against 10.13 (BG/NBD x Gamma-Gamma: 11.04).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

KEYS = ("user_id", "snapshot_at")
OBJECTIVES = ("tweedie", "log1p")
MAX_ROWS = 150_000  # training rows kept (whole snapshots, thinned evenly) to bound time


class NoTrainingRows(ValueError):
    """No snapshot's window ends by the as-of date, or none holds a shopper with history."""


def feature_columns(features: pd.DataFrame) -> list[str]:
    """Every column of the feature rows but the keys."""
    return [c for c in features.columns if c not in KEYS]


def spend_after(
    rows: pd.DataFrame, orders: pd.DataFrame, horizon: int, *, before: pd.Timestamp | None = None
) -> np.ndarray:
    """Per (user_id, snapshot_at) row: the spend in [snapshot, snapshot + horizon days), counting
    only orders before `before` when given (so a label never sees past it)."""
    o = orders if before is None else orders[orders.ordered_at < before]
    o = o[["user_id", "ordered_at", "amount"]].sort_values("ordered_at", kind="stable")
    # One time unit on both sides: merge_asof refuses to compare microseconds with nanoseconds.
    o = o.assign(
        ordered_at=o.ordered_at.dt.as_unit("ns"),
        cum=o.groupby("user_id").amount.cumsum().astype(float),
    )
    r = rows[["user_id", "snapshot_at"]].reset_index(drop=True)
    r = r.assign(snapshot_at=r.snapshot_at.dt.as_unit("ns"), row=np.arange(len(r)))

    def spent_before(at: pd.Series) -> np.ndarray:
        """Each row's cumulative spend over the orders strictly before `at`."""
        q = pd.DataFrame({"user_id": r.user_id, "at": at, "row": r.row}).sort_values("at")
        m = pd.merge_asof(
            q,
            o[["user_id", "ordered_at", "cum"]],
            left_on="at",
            right_on="ordered_at",
            by="user_id",
            direction="backward",
            allow_exact_matches=False,
        )
        return m.sort_values("row").cum.fillna(0.0).to_numpy(float)

    end = r.snapshot_at + pd.Timedelta(days=horizon)
    return spent_before(end) - spent_before(r.snapshot_at)


def _thin(rows: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows: every k-th snapshot counted back from the latest, then a random
    sample if one snapshot alone is too large."""
    if len(rows) <= max_rows:
        return rows
    snaps = np.sort(rows.snapshot_at.unique())[::-1]
    stride = int(np.ceil(len(rows) / max_rows))
    kept = rows[rows.snapshot_at.isin(snaps[::stride])]
    if len(kept) > max_rows:
        kept = kept.sample(max_rows, random_state=seed)
    return kept


def training_rows(
    features: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    horizon: int,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
) -> pd.DataFrame:
    """The rows a value model judged at `as_of` may learn from, with their label `spend`:
    snapshots t with t + horizon <= as_of, shoppers with an order before t. Raises
    `NoTrainingRows` when there are none."""
    window = pd.Timedelta(days=horizon)
    rows = features[features.snapshot_at + window <= as_of]
    if rows.empty:
        raise NoTrainingRows(
            f"no feature snapshot has its {horizon}-day window end by {as_of:%Y-%m-%d}; the "
            f"features start {features.snapshot_at.min():%Y-%m-%d}"
        )
    first = orders.groupby("user_id").ordered_at.min()
    seen = rows.user_id.map(first)
    rows = rows[seen.notna() & (seen < rows.snapshot_at)]
    if rows.empty:
        raise NoTrainingRows(
            f"no shopper had an order before any snapshot whose {horizon}-day window ends by "
            f"{as_of:%Y-%m-%d}"
        )
    rows = _thin(rows, max_rows, seed)
    spend = spend_after(rows, orders, horizon, before=as_of)
    return rows.assign(spend=spend).reset_index(drop=True)


@dataclass(kw_only=True)
class SpendModel:
    """Expected spend in `horizon_days` after a snapshot, from its feature row.

    `objective`: "tweedie" (`reg:tweedie`, the mean) or "log1p" (squared error on log1p of the
    spend). Learned: `features_`, `booster_`, `best_iteration_`, `validation_snapshots_`."""

    horizon_days: int
    objective: str = "tweedie"
    tweedie_variance_power: float = 1.5
    n_estimators: int = 1000
    early_stopping_rounds: int = 50
    validation_share: float = 0.2
    learning_rate: float = 0.1
    max_depth: int = 4
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    reg_lambda: float = 1.0
    n_jobs: int = 2
    seed: int = 0

    def _params(self) -> dict[str, object]:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}: expected one of {OBJECTIVES}")
        params: dict[str, object] = {
            "tree_method": "hist",
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "nthread": self.n_jobs,
            "seed": self.seed,
        }
        if self.objective == "tweedie":
            params |= {
                "objective": "reg:tweedie",
                "tweedie_variance_power": self.tweedie_variance_power,
                "eval_metric": f"tweedie-nloglik@{self.tweedie_variance_power}",
            }
        else:
            params |= {"objective": "reg:squarederror", "eval_metric": "rmse"}
        return params

    def _target(self, spend: np.ndarray) -> np.ndarray:
        s = np.maximum(np.asarray(spend, float), 0.0)
        return np.log1p(s) if self.objective == "log1p" else s

    def fit(self, rows: pd.DataFrame, spend) -> SpendModel:
        """Learns from `rows` (feature rows with `snapshot_at`) and their realised `spend`."""
        params = self._params()
        self.features_ = feature_columns(rows.drop(columns=["spend"], errors="ignore"))
        X = rows[self.features_].astype("float32")
        y = self._target(spend)
        snaps = np.sort(rows.snapshot_at.unique())
        n_val = int(np.floor(len(snaps) * self.validation_share))
        rounds = self.n_estimators
        self.validation_snapshots_ = n_val
        if n_val >= 1 and len(snaps) - n_val >= 1:
            late = rows.snapshot_at.isin(snaps[-n_val:]).to_numpy()
            train = xgb.DMatrix(X[~late], y[~late], nthread=self.n_jobs)
            valid = xgb.DMatrix(X[late], y[late], nthread=self.n_jobs)
            probe = xgb.train(
                params,
                train,
                num_boost_round=self.n_estimators,
                evals=[(valid, "late")],
                early_stopping_rounds=self.early_stopping_rounds,
                verbose_eval=False,
            )
            rounds = probe.best_iteration + 1
        self.best_iteration_ = rounds - 1
        full = xgb.DMatrix(X, y, nthread=self.n_jobs)
        self.booster_ = xgb.train(params, full, num_boost_round=rounds, verbose_eval=False)
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Expected spend per row (0 or more); features the rows lack count as missing."""
        X = rows.reindex(columns=self.features_).astype("float32")
        p = self.booster_.predict(xgb.DMatrix(X, nthread=self.n_jobs)).astype(float)
        return np.maximum(np.expm1(p), 0.0) if self.objective == "log1p" else p


def fit_spend_model(
    features: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    horizon: int,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    **settings,
) -> tuple[SpendModel, pd.DataFrame]:
    """A `SpendModel` fitted on the `training_rows` for `as_of` (settings as its fields), and
    those rows."""
    rows = training_rows(
        features, orders, as_of=as_of, horizon=horizon, max_rows=max_rows, seed=seed
    )
    model = SpendModel(horizon_days=horizon, seed=seed, **settings).fit(rows, rows.spend)
    return model, rows


__all__ = [
    "NoTrainingRows",
    "SpendModel",
    "feature_columns",
    "fit_spend_model",
    "spend_after",
    "training_rows",
]
