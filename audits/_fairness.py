"""Group fairness of a targeting decision: per-group metrics, the gaps between groups, their
bootstrap intervals, and a PASS / WARN / FAIL per check.

The decision is "gets an offer": for the model as it stands, a score at or above the operating
threshold; for a post-processed variant, its own decisions. Every per-group figure is
Fairlearn's `MetricFrame`. The intervals resample shoppers (a shopper's rows across the test
snapshots go together, as in `models._uncertainty`): each resample only reweights the rows, so
every metric the checks use is a ratio of weighted per-group counts, and one sparse product
gives those counts for all resamples at once. Computed with unit weights, the same counts give
exactly MetricFrame's figures (a test holds them to it). A gap's interval is the basic
bootstrap one (`_gap_interval` says why); a group's own rate keeps the percentile interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from scipy import sparse
from sklearn.metrics import precision_score, roc_auc_score

from cadence.models._uncertainty import cluster_weights

UNKNOWN = "unknown"
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
# Per-group counts the gaps are built from, per row: all, offered, buyers, offered buyers,
# and the predicted probability (summed, for calibration).
_CELLS = ("n", "selected", "buyers", "selected_buyers", "predicted")
# Checks as (name, the gap they read, which side passes).
CHECKS = (
    ("demographic_parity", "demographic_parity_ratio", "at_least"),
    ("equalized_odds", "equalized_odds_difference", "at_most"),
    ("calibration", "calibration_gap", "at_most"),
)


@dataclass(frozen=True)
class Resample:
    """Customer resamples shared by every grouping: draws per customer (resamples x
    customers) and each row's customer index."""

    draws: np.ndarray
    index: np.ndarray

    @classmethod
    def of(cls, clusters: np.ndarray, resamples: int, seed: int) -> Resample:
        if resamples < 1:
            raise ValueError(f"resamples must be 1 or more, got {resamples}")
        return cls(*cluster_weights(np.asarray(clusters), resamples, np.random.default_rng(seed)))


@dataclass(frozen=True)
class Limits:
    """The thresholds of the checks (conf/audits.yaml `thresholds`)."""

    demographic_parity_ratio: float = 0.8
    equalized_odds_difference: float = 0.10
    calibration_gap: float = 0.05


# The per-group metrics, in the order `_targeting` returns them.
METRICS = (
    "count",
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "precision",
    "roc_auc",
    "mean_predicted",
    "observed_rate",
)


def _targeting(y_true: np.ndarray, y_pred: np.ndarray, *, offered: np.ndarray) -> np.ndarray:
    """Every per-group metric of the decisions `offered` (scores `y_pred`), in one call:
    MetricFrame copies its inputs element by element on each metric call (about 0.25 s per
    40,000 rows), so eight separate metrics would cost eight copies per group."""
    y, s = np.asarray(y_true, int), np.asarray(y_pred, float)
    chosen = np.asarray(offered, bool)
    both = 0 < y.sum() < len(y)
    return np.array(
        [
            count(y, chosen),
            selection_rate(y, chosen),
            true_positive_rate(y, chosen) if y.any() else np.nan,
            false_positive_rate(y, chosen) if not y.all() else np.nan,
            precision_score(y, chosen, zero_division=np.nan) if chosen.any() else np.nan,
            roc_auc_score(y, s) if both else np.nan,
            s.mean(),
            y.mean(),
        ],
        dtype=float,
    )


def metric_frame(
    y: np.ndarray, p: np.ndarray, *, offered: np.ndarray, sensitive_features: pd.Series
) -> MetricFrame:
    """Fairlearn's MetricFrame of the targeting decisions `offered`: per group (and
    overall) the `METRICS`, selection rate, true and false positive rates, precision, AUC,
    mean predicted probability and observed buying rate (their difference is the group's
    calibration-in-the-large), as one array per group (`by_group_table` spreads them out)."""
    return MetricFrame(
        metrics={"targeting": _targeting},
        y_true=np.asarray(y, int),
        y_pred=np.asarray(p, float),
        sensitive_features=sensitive_features,
        sample_params={"targeting": {"offered": np.asarray(offered, bool)}},
    )


def by_group_table(frame: MetricFrame) -> pd.DataFrame:
    """The frame's per-group arrays as one column per metric."""
    values = np.vstack(frame.by_group["targeting"].to_numpy())
    return pd.DataFrame(values, index=frame.by_group.index, columns=list(METRICS))


def _group_rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group rates from counts shaped (..., groups, cells)."""
    n, sel, pos, tp, pred = (counts[..., i] for i in range(len(_CELLS)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "selection_rate": sel / n,
            "true_positive_rate": tp / pos,
            "false_positive_rate": (sel - tp) / (n - pos),
            # Observed minus predicted: positive where the model under-predicts the group.
            "calibration_difference": (pos - pred) / n,
        }


def _spread(values: np.ndarray) -> np.ndarray:
    """max - min over groups (the last axis), ignoring groups where the rate is undefined."""
    return np.nanmax(values, axis=-1) - np.nanmin(values, axis=-1)


def gaps_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The gaps between groups from per-group counts (..., groups, cells), as Fairlearn
    defines them: demographic parity difference and ratio (of selection rates), equalized odds
    difference (the larger of the TPR and FPR spreads), and the calibration gap (the spread of
    observed-minus-predicted rates)."""
    r = _group_rates(counts)
    sel = r["selection_rate"]
    # A resample can leave a rate undefined in every group (no buyers drawn, say): its gap is
    # NaN, which the percentile interval leaves out.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        high = np.nanmax(sel, axis=-1)
        ratio = np.where(high > 0, np.nanmin(sel, axis=-1) / np.where(high > 0, high, 1), np.nan)
        return {
            "demographic_parity_difference": _spread(sel),
            "demographic_parity_ratio": ratio,
            "equalized_odds_difference": np.fmax(
                _spread(r["true_positive_rate"]), _spread(r["false_positive_rate"])
            ),
            "calibration_gap": _spread(r["calibration_difference"]),
        }


def group_counts(
    y: np.ndarray,
    p: np.ndarray,
    *,
    offered: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    clusters: np.ndarray,
    n_clusters: int,
) -> sparse.csr_matrix:
    """(clusters x groups*cells): each customer's counts in each group."""
    y = np.asarray(y, float)
    sel = np.asarray(offered, float)
    values = np.column_stack([np.ones_like(y), sel, y, sel * y, np.asarray(p, float)])
    k = len(_CELLS)
    cols = (np.asarray(groups)[:, None] * k + np.arange(k)).ravel()
    rows = np.repeat(np.asarray(clusters), k)
    return sparse.csr_matrix((values.ravel(), (rows, cols)), shape=(n_clusters, n_groups * k))


def calibration_curves(
    y: np.ndarray, p: np.ndarray, labels: np.ndarray, bins: int = 10
) -> dict[str, list[dict[str, float]]]:
    """Per group, the mean predicted probability and the observed buying rate in each of
    `bins` score bins shared by all groups (quantiles of all rows' scores), so that groups
    are compared at the same scores; empty bins are left out."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1]))
    frame = pd.DataFrame(
        {"g": labels, "b": np.searchsorted(edges, p, side="right"), "y": y, "p": p}
    )
    agg = frame.groupby(["g", "b"]).agg(
        predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size")
    )
    return {
        str(g): [
            {"predicted": float(r.predicted), "observed": float(r.observed), "n": int(r.n)}
            for r in part.itertuples()
        ]
        for g, part in agg.groupby(level="g")
    }


def _interval(estimate: float, samples: np.ndarray, level: float) -> dict[str, float]:
    """Percentile interval: for a group's own rate, whose bootstrap is centred on it."""
    tail = (1 - level) / 2 * 100
    finite = samples[np.isfinite(samples)]
    low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
    return {"estimate": _num(estimate), "low": _num(low), "high": _num(high)}


def _gap_interval(estimate: float, samples: np.ndarray, level: float) -> dict[str, float]:
    """Basic (reverse percentile) interval, 2 x estimate - the percentiles, within [0, 1],
    where every gap lies. A gap is a maximum minus a minimum over noisy group rates, so noise
    alone pushes it apart, and the resamples push it further: on groups whose true rates are equal,
    the percentile interval would sit wholly above zero. Reflecting the resamples about the
    estimate removes that first-order bias (Davison & Hinkley 1997, section 5.2)."""
    tail = (1 - level) / 2 * 100
    finite = samples[np.isfinite(samples)]
    if not finite.size or not np.isfinite(estimate):
        return {"estimate": _num(estimate), "low": None, "high": None}
    q_low, q_high = np.percentile(finite, [tail, 100 - tail])
    low, high = np.clip([2 * estimate - q_high, 2 * estimate - q_low], 0.0, 1.0)
    return {"estimate": _num(estimate), "low": _num(low), "high": _num(high)}


def _num(x: float) -> float | None:
    """JSON has no NaN: an undefined figure is null."""
    x = float(x)
    return x if np.isfinite(x) else None


def status(gap: Mapping[str, float | None], limit: float, side: str) -> str:
    """PASS when the whole interval is on the passing side of the limit, FAIL when it is
    wholly on the failing side, WARN when it straddles the limit (or cannot be computed)."""
    low, high = gap.get("low"), gap.get("high")
    if low is None or high is None:
        return WARN
    if side == "at_least":
        return PASS if low >= limit else FAIL if high < limit else WARN
    return PASS if high <= limit else FAIL if low > limit else WARN


def audit_grouping(
    y: np.ndarray,
    p: np.ndarray,
    *,
    offered: np.ndarray,
    sensitive_features: pd.Series,
    resample: Resample,
    min_shoppers: int,
    limits: Limits,
    level: float = 0.95,
) -> dict[str, Any]:
    """One grouping's per-group metrics (MetricFrame), its gaps with customer-bootstrap
    intervals, and the checks. A group of fewer than `min_shoppers` distinct shoppers is
    listed with its counts and marked too small; it takes no part in the gaps."""
    labels = sensitive_features.astype("string").fillna(UNKNOWN).to_numpy(dtype=object)
    y, p, offered = np.asarray(y, int), np.asarray(p, float), np.asarray(offered, bool)
    frame = by_group_table(
        metric_frame(y, p, offered=offered, sensitive_features=pd.Series(labels, name="group"))
    )
    names = [str(g) for g in frame.index]
    # A shopper's rows at successive snapshots are one shopper: size is counted in shoppers.
    shoppers = pd.DataFrame({"g": labels, "c": resample.index}).drop_duplicates().g.value_counts()
    large = shoppers.reindex(names).to_numpy() >= min_shoppers
    groups = []
    for name, row, ok in zip(names, frame.itertuples(), large, strict=True):
        entry: dict[str, Any] = {
            "group": name,
            "n": int(row.count),
            "shoppers": int(shoppers[name]),
            "buyers": int(round(row.observed_rate * row.count)),
        }
        if ok:
            entry.update({m: _num(getattr(row, m)) for m in METRICS if m != "count"})
        else:
            entry["too_small"] = True
        groups.append(entry)
    out: dict[str, Any] = {"groups": groups}
    kept = [n for n, ok in zip(names, large, strict=True) if ok]
    if len(kept) < 2:
        out["note"] = (
            f"{len(kept)} group(s) of at least {min_shoppers} shoppers: no gap can be measured"
        )
        out["gaps"] = {}
        out["checks"] = [
            {
                "check": c,
                "gap": g,
                "limit": getattr(limits, g),
                "side": side,
                "estimate": None,
                "low": None,
                "high": None,
                "status": WARN,
                "note": out["note"],
            }
            for c, g, side in CHECKS
        ]
        return out
    index = {n: i for i, n in enumerate(kept)}
    inside = np.array([lab in index for lab in labels])
    codes = np.array([index[lab] for lab in labels[inside]])
    draws, cluster_index = resample.draws, resample.index
    resamples = draws.shape[0]
    per_customer = group_counts(
        y[inside],
        p[inside],
        offered=offered[inside],
        groups=codes,
        n_groups=len(kept),
        clusters=cluster_index[inside],
        n_clusters=draws.shape[1],
    )
    k = len(_CELLS)
    point = np.asarray(per_customer.sum(axis=0)).reshape(len(kept), k)
    boot = np.asarray((per_customer.T @ draws.T).T).reshape(resamples, len(kept), k)
    point_gaps = gaps_from_counts(point)
    boot_gaps = gaps_from_counts(boot)
    out["gaps"] = {
        name: _gap_interval(float(point_gaps[name]), boot_gaps[name], level) for name in point_gaps
    }
    rates, boot_rates = _group_rates(point), _group_rates(boot)
    curves = calibration_curves(y, p, labels)
    for entry in groups:
        if entry["group"] in index:
            i = index[entry["group"]]
            entry["intervals"] = {
                m: _interval(float(rates[m][i]), boot_rates[m][:, i], level) for m in rates
            }
            entry["calibration_curve"] = curves[entry["group"]]
    out["checks"] = [
        {
            "check": check,
            "gap": gap,
            "limit": getattr(limits, gap),
            "side": side,
            **out["gaps"][gap],
            "status": status(out["gaps"][gap], getattr(limits, gap), side),
        }
        for check, gap, side in CHECKS
    ]
    out["resamples"] = resamples
    out["level"] = level
    return out


def verdict(statuses: list[str]) -> str:
    """FAIL if any check failed, else WARN if any warned, else PASS."""
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS
