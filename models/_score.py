"""The scored list marketing works from: who, how likely, when, when to contact, and why."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models._train import Trained

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
            f"{min(available).date()} to {max(available).date()} every {every_days} days; run "
            f"`cadence features build --snapshots {as_of.date()}` to score that date"
        )
    return max(before)


def score_frame(
    trained: Trained,
    frame: pd.DataFrame,
    *,
    snapshot: pd.Timestamp,
    lead_days: int,
    medium: float,
    high: float,
    model_version: str,
) -> pd.DataFrame:
    """One row per user in `frame`: probability, band, expected date and interval, contact
    date, the three features that moved the score most (TreeSHAP), model version, as-of."""
    pred = trained.predict(frame)
    p = pred.probability.to_numpy()
    day = snapshot.floor("D")

    def on(days: np.ndarray) -> np.ndarray:
        return (day + pd.to_timedelta(np.round(days), unit="D")).date

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
    X = trained.inputs(frame)
    contrib = trained.propensity.contributions(X)
    top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :DRIVERS]
    names = np.asarray(X.columns)
    for k in range(DRIVERS):
        out[f"driver_{k + 1}"] = names[top[:, k]]
        out[f"driver_{k + 1}_shap"] = np.take_along_axis(contrib, top[:, k : k + 1], 1)[:, 0]
    out["model_version"] = model_version
    out["as_of"] = snapshot
    return out


def summary(scored: pd.DataFrame) -> dict[str, object]:
    counts = scored.band.value_counts()
    return {
        "users": len(scored),
        "bands": {b: int(counts.get(b, 0)) for b in ("high", "medium", "low")},
        "expected_orders_in_horizon": float(scored.probability.sum()),
    }
