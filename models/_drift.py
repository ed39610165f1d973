"""Drift: how far today's model inputs and scores have moved from the champion's training window,
and whether that, or a fall in realised ROC AUC, calls for retraining.

The population stability index compares two samples over bins cut at the reference's quantiles:
PSI = sum over bins of (current share - reference share) * ln(current share / reference share).
About 0.1 is a small shift, 0.25 a large one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# An empty bin's share becomes this, so the logarithm stays finite (a bin holding 10% of one
# sample and none of the other then adds about 0.7).
FLOOR = 1e-4
# A reason lists this many of the inputs beyond the limit, the largest shifts first.
NAMED = 10


def _values(x) -> np.ndarray:
    return pd.Series(x).to_numpy(dtype=float, na_value=np.nan)


def shares(values, edges: np.ndarray) -> np.ndarray:
    """Share of the values in each bin: (-inf, e0], (e0, e1], ..., (e_last, inf), and last the
    missing ones (NaN or infinite), which are a bin of their own."""
    x = _values(values)
    known = np.isfinite(x)
    counts = np.bincount(np.searchsorted(edges, x[known], side="left"), minlength=len(edges) + 1)
    counts = np.append(counts, (~known).sum())
    return counts / max(len(x), 1)


def quantile_edges(reference, bins: int) -> np.ndarray:
    """The inner cut points: the reference's quantiles at 1/bins, ..., (bins-1)/bins, each one of
    its values, repeated ones dropped (a feature with a few distinct values gets at most a bin
    per value)."""
    x = _values(reference)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    # The smallest value with at least k/bins of the sample at or below it, in integers, so
    # that 1,000 values cut into ten bins of exactly 100.
    at = (x.size * np.arange(1, bins) + bins - 1) // bins - 1
    return np.unique(np.partition(x, at)[at])


def psi(reference, current, bins: int = 10, *, floor: float = FLOOR) -> float:
    """Population stability index of `current` against `reference` (array-likes of numbers)."""
    edges = quantile_edges(reference, bins)
    ref = np.maximum(shares(reference, edges), floor)
    cur = np.maximum(shares(current, edges), floor)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_columns(
    reference: pd.DataFrame, current: pd.DataFrame, bins: int = 10, *, floor: float = FLOOR
) -> pd.Series:
    """PSI of every column of `reference` (which `current` must hold too), largest first."""
    missing = [c for c in reference.columns if c not in current]
    if missing:
        raise ValueError(f"the current rows lack {len(missing)} column(s): {missing[:5]}")
    out = pd.Series(
        {c: psi(reference[c], current[c], bins, floor=floor) for c in reference.columns},
        dtype=float,
    )
    return out.sort_values(ascending=False, kind="stable")


@dataclass(frozen=True)
class Limits:
    """Beyond any of these, retrain (conf/flows.yaml, `drift`)."""

    max_feature_psi: float
    max_score_psi: float
    max_auc_drop: float


@dataclass(frozen=True)
class Verdict:
    retrain: bool
    reasons: list[str] = field(default_factory=list)


def verdict(
    feature_psi: Mapping[str, float],
    score_psi: float,
    limits: Limits,
    *,
    auc_realised: float | None = None,
    auc_test: float | None = None,
) -> Verdict:
    """Retrain when an input's PSI, the score's PSI or the fall from the test ROC AUC to the
    realised one is beyond its limit; each reason names the figure, its value and the limit.
    Without a realised AUC (no labelled snapshot after the test window yet) that check waits."""
    reasons = []
    over = sorted(
        ((name, v) for name, v in feature_psi.items() if v > limits.max_feature_psi),
        key=lambda item: -item[1],
    )
    if over:
        named = ", ".join(f"{name} {v:.3f}" for name, v in over[:NAMED])
        more = f" and {len(over) - NAMED} more" if len(over) > NAMED else ""
        reasons.append(
            f"input PSI above {limits.max_feature_psi} in {len(over)} of {len(feature_psi)}: "
            f"{named}{more}"
        )
    if score_psi > limits.max_score_psi:
        reasons.append(f"score PSI {score_psi:.3f} above {limits.max_score_psi}")
    if auc_realised is not None and auc_test is not None:
        drop = auc_test - auc_realised
        if drop > limits.max_auc_drop:
            reasons.append(
                f"realised ROC AUC {auc_realised:.3f} is {drop:.3f} below the test AUC "
                f"{auc_test:.3f} (limit {limits.max_auc_drop})"
            )
    return Verdict(bool(reasons), reasons)
