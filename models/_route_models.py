"""Training and judging the routing models: parcel cost, delivery days (quantiles), damage.

The history is split by time: the last `holdout_days` are never trained on (the replay judges
routing there), and the last share of the rest stops boosting early. The history is biased: the
legacy rule chose most nodes, so the errors are reported by how often the rule chose that node
for that destination city (`by_rule_share`), where the models must extrapolate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import log_loss, roc_auc_score

from cadence.models._route_code import Stored, predict, quantile_column

# Buckets of "how often the legacy rule sent this destination city's parcels to this node".
RULE_BUCKETS = (0.0, 0.02, 0.10, 0.40, 1.0)


@dataclass(frozen=True)
class BoostParams:
    n_estimators: int = 400
    learning_rate: float = 0.2
    max_depth: int = 8
    early_stopping_rounds: int = 30
    seed: int = 0
    n_jobs: int = 2
    # Damage is a rare event: shallower, slower trees.
    damage_max_depth: int = 3
    damage_learning_rate: float = 0.05


def fit(
    frame: pd.DataFrame,
    targets: pd.DataFrame,
    *,
    features: list[str],
    quantiles: tuple[float, ...],
    params: BoostParams,
    valid_share: float = 0.15,
) -> Stored:
    """The three boosters on the history's parcels, the latest `valid_share` stopping them."""
    order = np.argsort(targets.ordered_us.to_numpy(), kind="stable")
    cut = int(len(order) * (1 - valid_share))
    tr, va = order[:cut], order[cut:]
    X = frame[features].to_numpy(np.float32)
    common = {
        "tree_method": "hist",
        "eta": params.learning_rate,
        "max_depth": params.max_depth,
        "seed": params.seed,
        "nthread": params.n_jobs,
    }

    def boost(objective: dict, y: np.ndarray, **overrides) -> xgb.Booster:
        dtr = xgb.DMatrix(X[tr], label=y[tr], nthread=params.n_jobs)
        dva = xgb.DMatrix(X[va], label=y[va], nthread=params.n_jobs)
        return xgb.train(
            {**common, **objective, **overrides},
            dtr,
            num_boost_round=params.n_estimators,
            evals=[(dva, "valid")],
            early_stopping_rounds=params.early_stopping_rounds,
            verbose_eval=False,
        )

    def trimmed(b: xgb.Booster) -> xgb.Booster:
        return b[: b.best_iteration + 1]

    # A tariff multiplies zone, carrier and weight prices: on the log scale they add, which a
    # few trees learn where hundreds would not on the raw scale.
    cost = trimmed(boost({"objective": "reg:squarederror"}, np.log1p(targets.cost.to_numpy())))
    delivery = trimmed(
        boost(
            {"objective": "reg:quantileerror", "quantile_alpha": np.array(quantiles)},
            targets.days_after_cutoff.to_numpy(),
        )
    )
    damage = trimmed(
        boost(
            {"objective": "binary:logistic", "eval_metric": "logloss"},
            targets.damaged.to_numpy(np.float64),
            max_depth=params.damage_max_depth,
            eta=params.damage_learning_rate,
        )
    )
    settings = {
        "features": features,
        "quantiles": list(quantiles),
        "cost_scale": "log1p",
        "n_jobs": params.n_jobs,
        "rounds": {
            "cost": cost.num_boosted_rounds(),
            "delivery": delivery.num_boosted_rounds(),
            "damage": damage.num_boosted_rounds(),
        },
    }
    return Stored(cost, delivery, damage, settings)


def rule_share(targets: pd.DataFrame) -> pd.Series:
    """How often the history's rule sent each destination city's parcels to each node."""
    counts = targets.groupby(["dest_city", "node"]).size()
    return counts / counts.groupby(level=0).transform("sum")


def metrics(stored: Stored, frame: pd.DataFrame, targets: pd.DataFrame) -> dict[str, float]:
    """Errors on parcels the models did not train on."""
    p = predict(stored, frame)
    y_days = targets.days_after_cutoff.to_numpy()
    out = {
        "parcels": float(len(frame)),
        "cost_mae": float(np.mean(np.abs(p.cost - targets.cost))),
        "cost_mape": float(np.mean(np.abs(p.cost - targets.cost) / np.maximum(targets.cost, 1e-9))),
    }
    for q in stored.settings["quantiles"]:
        col = quantile_column(q)
        diff = y_days - p[col].to_numpy()
        out[f"{col}_coverage"] = float(np.mean(diff <= 0))
        out[f"{col}_pinball"] = float(np.mean(np.maximum(q * diff, (q - 1) * diff)))
    damaged = targets.damaged.to_numpy(int)
    out["damage_log_loss"] = float(
        log_loss(damaged, np.clip(p.damage, 1e-9, 1 - 1e-9), labels=[0, 1])
    )
    out["damage_auc"] = (
        float(roc_auc_score(damaged, p.damage))
        if 0 < damaged.sum() < len(damaged)
        else float("nan")
    )
    return out


def by_rule_share(
    stored: Stored, frame: pd.DataFrame, targets: pd.DataFrame, shares: pd.Series
) -> pd.DataFrame:
    """Cost and delivery errors on held-out parcels, by how often the rule chose their node for
    their destination city in the training history (0: never)."""
    key = pd.MultiIndex.from_arrays([targets.dest_city, targets.node])
    share = shares.reindex(key).fillna(0.0).to_numpy()
    p = predict(stored, frame)
    bucket = np.digitize(share, RULE_BUCKETS[1:-1], right=False)
    q_hi = quantile_column(max(stored.settings["quantiles"]))
    rows = []
    for b in range(len(RULE_BUCKETS) - 1):
        m = bucket == b
        if not m.any():
            continue
        rows.append(
            {
                "rule_share": f"{RULE_BUCKETS[b]:.0%}-{RULE_BUCKETS[b + 1]:.0%}",
                "parcels": int(m.sum()),
                "cost_mae": float(np.mean(np.abs(p.cost[m] - targets.cost[m]))),
                f"{q_hi}_coverage": float(np.mean(targets.days_after_cutoff[m] <= p[q_hi][m])),
            }
        )
    return pd.DataFrame(rows)
