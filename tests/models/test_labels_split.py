from __future__ import annotations

import pandas as pd
import pytest

from cadence.models._labels import label_rows
from cadence.models._split import time_split

pytestmark = pytest.mark.unit

T = pd.Timestamp


def test_labels_count_orders_strictly_after_the_snapshot_within_the_horizon():
    orders = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "ordered_at": [
                T("2025-01-10", tz="UTC"),
                T("2025-02-20", tz="UTC"),
                T("2025-01-01", tz="UTC"),
            ],
        }
    )
    rows = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "a"],
            "snapshot_at": [
                T("2025-01-01", tz="UTC"),
                T("2025-01-10", tz="UTC"),
                T("2025-01-01", tz="UTC"),
                T("2025-03-01", tz="UTC"),
            ],
        }
    )
    out = label_rows(rows, orders, horizons=(7, 30), end=T("2025-03-15", tz="UTC"))
    # a@01-01: next order 9 days later; a@01-10: the order at t itself does not count.
    assert out.days_to_next.tolist()[:2] == [9.0, 41.0]
    assert out.y_7d.tolist()[:3] == [0, 0, 0] and out.y_30d.tolist()[:3] == [1, 0, 0]
    # b never orders again: censored at the end; a@03-01: the 30-day window is not over.
    assert out.censored.tolist() == [False, False, True, True]
    assert out.days_to_next.iloc[2] == 73.0
    assert pd.isna(out.y_30d.iloc[3]) and out.y_7d.iloc[3] == 0


def test_time_split_leaves_a_horizon_between_slices():
    snaps = [T("2025-01-01", tz="UTC") + pd.Timedelta(days=7 * i) for i in range(40)]
    end = snaps[-1]
    split = time_split(snaps, end=end, horizon_days=30, test=4, calibrate=4)
    h = pd.Timedelta(days=30)
    assert max(split.train) + h <= min(split.calibrate)
    assert max(split.calibrate) + h <= min(split.test)
    assert max(split.test) + h <= end
    assert len(split.test) == 4 and len(split.calibrate) == 4 and len(split.train) >= 15


def test_too_little_history_says_what_is_missing():
    snaps = [T("2025-01-01", tz="UTC") + pd.Timedelta(days=7 * i) for i in range(8)]
    with pytest.raises(ValueError, match="labelled snapshots"):
        time_split(snaps, end=snaps[-1], horizon_days=30, test=4, calibrate=4)
