"""The scored list marketing works from: who, how likely, when, when to contact, and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cadence.models._train import Trained

DRIVERS = 3


def pick_snapshot(
    available: list[pd.Timestamp], as_of: pd.Timestamp | None, every_days: int
) -> pd.Timestamp:
    """The snapshot to score from: the latest at or before `as_of` (default: the latest of
    all), no older than the grid's step."""
    if not available:
        raise ValueError("the feature build holds no snapshots")
    if as_of is None:
        return max(available)
    before = [s for s in available if s <= as_of]
    if not before or as_of - max(before) >= pd.Timedelta(days=every_days):
        raise ValueError(
            f"no features as of {as_of.isoformat()}: snapshots run from "
            f"{min(available).date()} to {max(available).date()} every {every_days} days; "
            "pick a date they cover, or rebuild the features on a grid that covers it"
        )
    return max(before)


def eligible(
    frame: pd.DataFrame, *, active_days: int, withdrawn: set[str] | None
) -> tuple[pd.DataFrame, int]:
    """The shoppers a list may hold: active (an order within `active_days` before the
    snapshot) and not among those who withdrew consent to profiling. Returns them and how
    many active shoppers consent left out."""
    active = frame[frame.days_since_last_order.to_numpy(float) <= active_days]
    if not withdrawn:
        return active.reset_index(drop=True), 0
    keep = ~active.user_id.isin(withdrawn)
    return active[keep].reset_index(drop=True), int((~keep).sum())


def score_frame(
    trained: Trained,
    frame: pd.DataFrame,
    *,
    snapshot: pd.Timestamp,
    lead_days: int,
    medium: float,
    high: float,
    model_version: str,
    exact_drivers: bool = True,
) -> pd.DataFrame:
    """One row per user in `frame`: probability, band, expected date and interval, contact
    date, the three features that moved the score most (TreeSHAP, or its fast approximation
    with `exact_drivers=False`), model version, as-of."""
    X = trained.inputs(frame)
    dm = trained.matrix(X)
    pred = trained.predict_inputs(X, dm)
    p = pred.probability.to_numpy()
    day = np.datetime64(snapshot.floor("D").tz_localize(None), "D")

    def on(days: np.ndarray) -> np.ndarray:
        return day + np.round(days).astype("timedelta64[D]")

    expected_days = pred.expected_days.to_numpy()
    out = pd.DataFrame(
        {
            "user_id": frame.user_id.to_numpy(),
            "probability": p,
            "likelihood": np.rint(p * 100).astype(np.int16),
            "band": np.select([p >= high, p >= medium], ["high", "medium"], "low"),
            "expected_next_order_date": on(expected_days),
            "next_order_date_low": on(pred.days_low.to_numpy()),
            "next_order_date_high": on(pred.days_high.to_numpy()),
            # Never in the past: a contact already due is due on the as-of day.
            "contact_date": on(np.maximum(np.round(expected_days) - lead_days, 0)),
        }
    )
    contrib = trained.propensity.contributions(dm, exact=exact_drivers)
    # The three largest contributions by size, largest first (a partition, then a sort of 3).
    size = np.abs(contrib)
    top = np.argpartition(-size, DRIVERS - 1, axis=1)[:, :DRIVERS]
    top = np.take_along_axis(
        top, np.argsort(-np.take_along_axis(size, top, 1), axis=1, kind="stable"), 1
    )
    names = np.asarray(X.columns)
    for k in range(DRIVERS):
        out[f"driver_{k + 1}"] = names[top[:, k]]
        out[f"driver_{k + 1}_shap"] = np.take_along_axis(contrib, top[:, k : k + 1], 1)[:, 0]
    out["model_version"] = model_version
    out["as_of"] = snapshot
    return out


def write_list(scored: pd.DataFrame, folder: Path) -> None:
    """The list as Parquet and CSV (dates as YYYY-MM-DD), written by Arrow."""
    table = pa.Table.from_pandas(scored, preserve_index=False)
    dates = ("expected_next_order_date", "next_order_date_low", "next_order_date_high")
    for col in (*dates, "contact_date"):
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, table[col].cast(pa.date32()))
    pq.write_table(table, folder / "scores.parquet", compression="zstd")
    pacsv.write_csv(table, folder / "scores.csv")


def summary(scored: pd.DataFrame) -> dict[str, object]:
    counts = scored.band.value_counts()
    return {
        "users": len(scored),
        "bands": {b: int(counts.get(b, 0)) for b in ("high", "medium", "low")},
        "expected_orders_in_horizon": float(scored.probability.sum()),
    }
