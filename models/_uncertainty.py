"""How sure a comparison is: paired cluster-bootstrap intervals, and metrics by segment.

A customer's rows across the test snapshots are not independent (the same shopper, a week
apart), so the bootstrap resamples customers, not rows: each resample draws customers with
replacement and weights every row by how often its customer was drawn. Every scorer is judged
on the same resamples (paired), so the interval of a difference reflects how the scorers
differ on the same shoppers, not two independent noises.

AUC comes from ranks: the scores are sorted once, and each resample only changes the weights,
so a resample is a weighted sum over the sorted ties (vectorised over resamples).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cadence.models._metrics import ece

DEFAULT_RESAMPLES = 200
LEVEL = 0.95
# A segment smaller than this, or with fewer buyers or non-buyers, gets no AUC: its ranking
# would be noise, and it is said so rather than printed.
MIN_SEGMENT_ROWS = 50
MIN_SEGMENT_CLASS = 5
# Resamples handled at once: bounds the memory a (resamples x rows) weight matrix takes.
CHUNK = 25


def weighted_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of scores `p` for labels `y`, under each row of `weights` (resamples x rows);
    ties count one half, as in the Mann-Whitney statistic. NaN where a resample holds one
    class only."""
    order, ys, starts = _ranked(y, p)
    return _auc_sorted(ys, starts, np.atleast_2d(np.asarray(weights, float))[:, order])


def _ranked(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows in score order, their labels in that order, and where each tie group starts."""
    p = np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    return order, np.asarray(y, bool)[order], starts


def _auc_sorted(ys: np.ndarray, starts: np.ndarray, ws: np.ndarray) -> np.ndarray:
    """AUC from weights already in score order: per tie group, the positive weight times the
    negative weight below it plus half the negative weight tied with it."""
    pos = ws * ys
    if len(starts) < ws.shape[1]:  # ties: sum each group (without ties, rows are groups)
        pos, ws = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(ws, starts, axis=1)
    neg = ws - pos
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each tie group
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total_pos > 0) & (total_neg > 0), wins / (total_pos * total_neg), np.nan)


def weighted_ece(y: np.ndarray, p: np.ndarray, weights: np.ndarray, bins: int = 10) -> np.ndarray:
    """Expected calibration error (equal-width bins, as `_metrics.ece`) under each row of
    `weights`: the sum over bins of |weighted buyers - weighted predictions| / total weight."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    w = np.atleast_2d(np.asarray(weights, float))
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    onehot = np.zeros((len(p), bins))
    onehot[np.arange(len(p)), idx] = 1.0
    gap = w @ (onehot * (y - p)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(gap).sum(axis=1) / w.sum(axis=1)


def cluster_weights(
    clusters: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(draws per cluster: resamples x clusters, each row's cluster index)."""
    _, index = np.unique(np.asarray(clusters), return_inverse=True)
    k = int(index.max()) + 1 if len(index) else 0
    draws = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(float)
    return draws, index


def _interval(estimate: float, samples: np.ndarray, level: float) -> dict[str, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


def paired_bootstrap(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    clusters: np.ndarray,
    *,
    reference: str = "model",
    against: tuple[str, ...] = ("bgnbd", "rule"),
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, object]:
    """Percentile intervals, from one set of customer resamples shared by every scorer, of
    each scorer's AUC and ECE and of the AUC difference `reference - other` for each scorer
    in `against` (those present in `scores`)."""
    if resamples < 1:
        raise ValueError(f"resamples must be 1 or more, got {resamples}")
    y = np.asarray(y, int)
    rng = np.random.default_rng(seed)
    draws, index = cluster_weights(clusters, resamples, rng)
    auc = {name: np.empty(resamples) for name in scores}
    cal = {name: np.empty(resamples) for name in scores}
    ranked = {name: _ranked(y, p) for name, p in scores.items()}
    for start in range(0, resamples, CHUNK):
        chunk = draws[start : start + CHUNK]
        w = chunk[:, index]
        for name, p in scores.items():
            order, ys, starts = ranked[name]
            # Each row's weight straight from its customer's draws, in this scorer's order.
            auc[name][start : start + CHUNK] = _auc_sorted(ys, starts, chunk[:, index[order]])
            cal[name][start : start + CHUNK] = weighted_ece(y, p, w)
    one = np.ones((1, len(y)))
    point_auc = {name: float(weighted_auc(y, p, one)[0]) for name, p in scores.items()}
    return {
        "resamples": resamples,
        "customers": int(draws.shape[1]),
        "level": level,
        "seed": seed,
        "roc_auc": {n: _interval(point_auc[n], auc[n], level) for n in scores},
        "ece": {n: _interval(ece(y, p), cal[n], level) for n, p in scores.items()},
        "roc_auc_difference": {
            f"{reference}-{other}": _interval(
                point_auc[reference] - point_auc[other], auc[reference] - auc[other], level
            )
            for other in against
            if other in scores and reference in scores
        },
    }


def segment_metrics(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    segments: Mapping[str, np.ndarray],
    *,
    min_rows: int = MIN_SEGMENT_ROWS,
    min_class: int = MIN_SEGMENT_CLASS,
) -> dict[str, dict]:
    """Rows, buyers and each scorer's AUC and ECE within each segment (a boolean mask over
    the rows); a segment too small or with too few of either class reports its size and why
    it has no metrics."""
    y = np.asarray(y, int)
    out: dict[str, dict] = {}
    for name, mask in segments.items():
        m = np.asarray(mask, bool)
        n, buyers = int(m.sum()), int(y[m].sum())
        seg: dict = {"n": n, "buyers": buyers}
        if n < min_rows:
            seg["note"] = f"{n} rows, fewer than {min_rows}: no metrics"
        elif min(buyers, n - buyers) < min_class:
            seg["note"] = (
                f"{buyers} buyers and {n - buyers} non-buyers: AUC needs at least {min_class} "
                "of each"
            )
        else:
            one = np.ones((1, n))
            for scorer, p in scores.items():
                ps = np.asarray(p, float)[m]
                seg[scorer] = {
                    "roc_auc": float(weighted_auc(y[m], ps, one)[0]),
                    "ece": ece(y[m], ps),
                }
        out[name] = seg
    return out


def metric_groups(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A report's `segments` and `intervals` as groups of flat metrics, for a tracker that
    takes one number per name: `segment.<segment>` (n, buyers, <scorer>.roc_auc, ...) and
    `interval.<measure>` (<scorer or difference>.estimate / .low / .high)."""
    groups: dict[str, dict[str, float]] = {}
    for seg, values in dict(report.get("segments") or {}).items():
        flat = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
        for scorer, m in values.items():
            if isinstance(m, dict):
                flat.update({f"{scorer}.{k}": float(v) for k, v in m.items()})
        groups[f"segment.{seg}"] = flat
    intervals = dict(report.get("intervals") or {})
    for measure in ("roc_auc", "ece", "roc_auc_difference"):
        groups[f"interval.{measure}"] = {
            f"{name}.{k}": float(v)
            for name, bounds in intervals.get(measure, {}).items()
            for k, v in bounds.items()
        }
    return {name: flat for name, flat in groups.items() if flat}
