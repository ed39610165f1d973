"""Evaluation metrics that cannot flatter: ranking, probability quality, lift, timing."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the top 10% by score over the overall positive rate."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    k = max(1, int(np.ceil(0.1 * len(p))))
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, int), np.asarray(p, float)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))),
        "ece": ece(y, p),
        "lift_top_decile": lift_top_decile(y, p),
    }


def timing_metrics(
    days: np.ndarray,
    censored: np.ndarray,
    predicted: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> dict[str, float]:
    """MAE in days and interval coverage, on the rows whose next order was observed."""
    seen = ~np.asarray(censored, bool)
    d = np.asarray(days, float)[seen]
    return {
        "timing_mae_days": float(np.mean(np.abs(np.asarray(predicted)[seen] - d))),
        "interval_coverage": float(
            np.mean((np.asarray(low)[seen] <= d) & (d <= np.asarray(high)[seen]))
        ),
    }


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10):
    """(mean predicted, observed rate, count) per equal-width bin, for the plot."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append((float(p[m].mean()), float(np.mean(y[m])), int(m.sum())))
    return rows


def gain_curve(y: np.ndarray, p: np.ndarray, points: int = 20):
    """(share of rows contacted, share of positives reached), best scores first."""
    order = np.argsort(-np.asarray(p), kind="stable")
    hits = np.cumsum(np.asarray(y, float)[order])
    total = hits[-1] if len(hits) and hits[-1] > 0 else 1.0
    cut = np.linspace(0, len(order), points + 1).astype(int)[1:]
    return [(c / len(order), float(hits[c - 1] / total)) for c in cut]
