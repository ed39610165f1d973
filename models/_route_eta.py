"""Arrival windows a shopper can trust: from the delivery model's lowest to its highest
quantile after the parcel's dispatch wave, widened to whole hours, and how often parcels of a
replay arrived inside theirs (the calibration the service reports beside every window)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cadence.models._route_code import matrix, predict_matrix, quantile_column
from cadence.models._route_inputs import DAY_US, pair_columns

HOUR_US = DAY_US // 24


def bounds(stored) -> tuple[float, float]:
    """The quantiles a window spans; their difference is its nominal coverage."""
    qs = stored.settings["quantiles"]
    return float(min(qs)), float(max(qs))


def windows(estimate, rows) -> tuple[np.ndarray, np.ndarray]:
    """Per parcel row (the order's columns, `node`, `carrier`, `wave_us`; a frame or a dict of
    arrays): the window's first and last instant in microseconds, on whole hours."""
    node = np.asarray(rows["node"], dtype=np.int64)
    wave = np.asarray(rows["wave_us"], dtype=np.int64)
    columns = pair_columns(
        estimate.net,
        rows,
        node,
        np.asarray(rows["carrier"], dtype=np.int64),
        wave,
        estimate.weather,
        estimate.node_features,
        wanted=estimate.stored.settings["features"],
    )
    x = matrix(estimate.stored, columns)
    p = predict_matrix(estimate.boosters_for(x.shape[0]), x)
    lo_q, hi_q = bounds(estimate.stored)
    lo = wave + (p[quantile_column(lo_q)] * DAY_US).astype(np.int64)
    hi = wave + (p[quantile_column(hi_q)] * DAY_US).astype(np.int64)
    return lo // HOUR_US * HOUR_US, -(-hi // HOUR_US) * HOUR_US


def calibration(estimate, parcels: pd.DataFrame) -> dict:
    """How the windows held on parcels whose true arrival (`delivered_us`) is known."""
    lo_q, hi_q = bounds(estimate.stored)
    out = {
        "parcels": int(len(parcels)),
        "quantiles": [lo_q, hi_q],
        "nominal": round(hi_q - lo_q, 4),
    }
    if parcels.empty:
        return {**out, "inside": None, "early": None, "late": None, "mean_hours": None}
    lo, hi = windows(estimate, parcels)
    arrived = parcels.delivered_us.to_numpy(np.int64)
    return {
        **out,
        "inside": round(float(((arrived >= lo) & (arrived <= hi)).mean()), 4),
        "early": round(float((arrived < lo).mean()), 4),
        "late": round(float((arrived > hi).mean()), 4),
        "mean_hours": round(float(((hi - lo) / HOUR_US).mean()), 2),
    }
