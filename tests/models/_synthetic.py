"""Labelled rows built in the tests: shoppers who order again about when their mean gap says."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cadence.models._split import TimeSplit


def replenishment_rows(
    categories: dict[str, tuple[float, float]],
    *,
    users: int,
    snapshots: int = 16,
    seed: int = 0,
) -> tuple[pd.DataFrame, TimeSplit, list[str]]:
    """Weekly (user, snapshot) rows with a 30-day label, sliced train / calibrate / test.

    `categories`: name -> (share of rows buying it, its gap relative to the shopper's mean gap);
    each adds `<name>_gap_mean` and `<name>_days_since`. Returns the rows, the split and the
    feature columns."""
    rng = np.random.default_rng(seed)
    snaps = list(pd.date_range("2025-01-05", periods=snapshots, freq="7D", tz="UTC"))
    n = users * snapshots
    gap = rng.uniform(10, 60, n)
    since = rng.uniform(0.5, 70, n)
    days = np.maximum(gap - since + rng.normal(0, 6, n), 0.5)
    censored = rng.random(n) < 0.15
    columns: dict[str, object] = {
        "user_id": [f"u{i}" for i in np.tile(np.arange(users), snapshots)],
        "snapshot_at": np.repeat(snaps, users),
    }
    for name, (share, factor) in categories.items():
        buys = rng.random(n) < share
        columns[f"{name}_gap_mean"] = np.where(buys, gap * factor, np.nan)
        columns[f"{name}_days_since"] = np.where(buys, since, np.nan)
    columns.update(
        {
            "gap_mean": gap + rng.normal(0, 3, n),
            "days_since_last_order": since,
            "orders_90d": rng.poisson(3, n).astype(float),
        }
    )
    features = [c for c in columns if c not in ("user_id", "snapshot_at")]
    frame = pd.DataFrame(
        {
            **columns,
            "days_to_next": days,
            "censored": censored,
            "y_30d": (~censored & (days <= 30)).astype(int),
        }
    )
    split = TimeSplit(snaps[:8], snaps[9:12], snaps[13:], horizon_days=30)
    frame["slice"] = split.slice_of(frame.snapshot_at)
    return frame[frame.slice.notna()].reset_index(drop=True), split, features
