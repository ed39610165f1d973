"""Splitting snapshots by time only: train, then calibration, then test, a horizon apart."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    train: list[pd.Timestamp]
    calibrate: list[pd.Timestamp]
    test: list[pd.Timestamp]
    horizon_days: int

    def window(self, name: str) -> str:
        """'first..last' snapshot dates of a slice ('train', 'calibrate' or 'test')."""
        snaps = getattr(self, name)
        return f"{snaps[0].date()}..{snaps[-1].date()}"

    def slice_of(self, snapshots: pd.Series) -> pd.Series:
        """'train', 'calibrate', 'test' or missing, per snapshot."""
        where = {
            **dict.fromkeys(self.train, "train"),
            **dict.fromkeys(self.calibrate, "calibrate"),
            **dict.fromkeys(self.test, "test"),
        }
        return snapshots.map(where)


def time_split(
    snapshots: list[pd.Timestamp],
    *,
    end: pd.Timestamp,
    horizon_days: int,
    test: int,
    calibrate: int,
) -> TimeSplit:
    """The last `test` labelled snapshots test; `calibrate` before them calibrate; the rest
    train. Each slice ends a full horizon before the next begins, so no label window of an
    earlier slice overlaps a later slice's snapshots."""
    h = pd.Timedelta(days=horizon_days)
    labelled = sorted(s for s in snapshots if s + h <= end)
    if len(labelled) < test + calibrate + 1:
        raise ValueError(
            f"{len(labelled)} labelled snapshots; need at least "
            f"{test + calibrate + 1} (test {test}, calibrate {calibrate}, train 1)"
        )
    test_s = labelled[-test:]
    cal_s = [s for s in labelled if s + h <= test_s[0]][-calibrate:]
    train_s = [s for s in labelled if s + h <= cal_s[0]] if cal_s else []
    if len(cal_s) < calibrate or not train_s:
        raise ValueError(
            f"not enough history for a {horizon_days}-day horizon: {len(labelled)} labelled "
            f"snapshots leave {len(train_s)} for training after the gaps"
        )
    return TimeSplit(train_s, cal_s, test_s, horizon_days)


def rolling_splits(
    snapshots: list[pd.Timestamp],
    *,
    end: pd.Timestamp,
    horizon_days: int,
    test: int,
    calibrate: int,
    windows: int,
) -> list[TimeSplit]:
    """`windows` splits for a rolling-origin backtest, oldest first: the last one is
    `time_split`'s own, and each earlier one is the same split moved back by one test window
    (`test` labelled snapshots), its test slice ending where the next one's begins."""
    if windows < 1:
        raise ValueError(f"{windows} backtest windows; need 1 or more")
    h = pd.Timedelta(days=horizon_days)
    labelled = sorted(s for s in snapshots if s + h <= end)
    splits = []
    for k in range(windows):
        kept = labelled[: len(labelled) - k * test]
        try:
            splits.append(
                time_split(kept, end=end, horizon_days=horizon_days, test=test, calibrate=calibrate)
            )
        except ValueError as exc:
            raise ValueError(
                f"{windows} test windows asked for, the data hold {k}: each moves the split "
                f"back {test} snapshots, and the next one would leave {exc}"
            ) from exc
    return splits[::-1]
