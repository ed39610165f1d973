"""Labels for (user, snapshot) rows: did the shopper order within h days, and when next."""

from __future__ import annotations

import pandas as pd


def label_rows(
    rows: pd.DataFrame, orders: pd.DataFrame, *, horizons: tuple[int, ...], end: pd.Timestamp
) -> pd.DataFrame:
    """Adds `y_{h}d` per horizon, `days_to_next` and `censored` to (user_id, snapshot_at) rows.

    y_{h}d is 1 when the shopper ordered in (t, t + h days]; it is missing when that window
    reaches past the data's end. days_to_next is the time to the first order after t, or, when
    none came before the end, the time to the end with `censored` true.
    """
    o = orders[["user_id", "ordered_at"]].sort_values("ordered_at")
    r = rows[["user_id", "snapshot_at"]].reset_index().sort_values("snapshot_at")
    nxt = (
        pd.merge_asof(
            r,
            o.rename(columns={"ordered_at": "next_at"}),
            left_on="snapshot_at",
            right_on="next_at",
            by="user_id",
            direction="forward",
            allow_exact_matches=False,
        )
        .set_index("index")
        .sort_index()
    )
    out = rows.copy()
    gap = (nxt.next_at - nxt.snapshot_at).dt.total_seconds() / 86400
    out["censored"] = nxt.next_at.isna() | (nxt.next_at > end)
    to_end = (end - nxt.snapshot_at).dt.total_seconds() / 86400
    out["days_to_next"] = gap.where(~out.censored, to_end)
    for h in horizons:
        known = nxt.snapshot_at + pd.Timedelta(days=h) <= end
        y = (~out.censored & (gap <= h)).astype("Int8")
        out[f"y_{h}d"] = y.where(known)
    return out
