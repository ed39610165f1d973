"""The scored list, directly: which snapshot, who is eligible, and each column of a scored row,
on a tiny model fitted here to a few thousand rows built here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.models._score import DRIVERS, eligible, pick_snapshot, score_frame
from cadence.models._split import TimeSplit
from cadence.models._train import Trained, fit
from tests.models._synthetic import replenishment_rows

pytestmark = pytest.mark.unit

SNAPS = list(pd.date_range("2025-01-05", periods=14, freq="7D", tz="UTC"))
WEEK = pd.Timedelta(days=7)


def test_the_latest_snapshot_by_default():
    assert pick_snapshot(SNAPS, None, 7) == SNAPS[-1]


def test_the_latest_snapshot_at_or_before_the_date():
    assert pick_snapshot(SNAPS, SNAPS[3], 7) == SNAPS[3]
    assert pick_snapshot(SNAPS, SNAPS[3] + pd.Timedelta(days=6, hours=23), 7) == SNAPS[3]
    # Within a grid step after the latest, the latest still answers.
    assert pick_snapshot(SNAPS, SNAPS[-1] + WEEK - pd.Timedelta(seconds=1), 7) == SNAPS[-1]


@pytest.mark.parametrize(
    "as_of",
    [SNAPS[0] - pd.Timedelta(seconds=1), SNAPS[-1] + WEEK, SNAPS[-1] + 10 * WEEK],
    ids=["before-the-first", "a-step-past-the-latest", "long-after"],
)
def test_a_date_the_snapshots_do_not_cover_is_refused_with_the_range(as_of):
    message = (
        f"no features as of {as_of.isoformat()}: snapshots run from 2025-01-05 to 2025-04-06 "
        "every 7 days; pick a date they cover, or rebuild the features on a grid that covers it"
    )
    with pytest.raises(ValueError) as exc:
        pick_snapshot(SNAPS, as_of, 7)
    assert str(exc.value) == message


def test_no_snapshots_at_all_is_refused():
    with pytest.raises(ValueError, match="holds no snapshots"):
        pick_snapshot([], None, 7)


def test_eligible_are_active_at_the_window_boundary_and_consent_is_counted():
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e", "f"],
            "days_since_last_order": [365.0, 365.0001, np.nan, 10.0, 0.5, 400.0],
        }
    )
    before = frame.copy()
    active, left_out = eligible(frame, active_days=365, withdrawn=None)
    assert active.user_id.tolist() == ["a", "d", "e"] and left_out == 0
    assert active.index.tolist() == [0, 1, 2]
    # A withdrawal counts only for a shopper who would have been on the list ("f" is not active).
    active, left_out = eligible(frame, active_days=365, withdrawn={"d", "f", "zz"})
    assert active.user_id.tolist() == ["a", "e"] and left_out == 1
    assert eligible(frame, active_days=365, withdrawn=set())[1] == 0
    pd.testing.assert_frame_equal(frame, before)  # the input is left as it was


# Shoppers' replenishments: the share of rows buying each, and its gap relative to their own.
CATEGORIES = {"pet_food": (0.5, 1.0)}


def _rows() -> tuple[pd.DataFrame, TimeSplit]:
    rows, split, _ = replenishment_rows(CATEGORIES, users=300, seed=7)
    return rows, split


FEATURES = replenishment_rows(CATEGORIES, users=1)[2]


@pytest.fixture(scope="module")
def tiny() -> tuple[Trained, pd.DataFrame]:
    rows, split = _rows()
    trained = fit(
        rows,
        FEATURES,
        split,
        n_jobs=1,
        propensity={"n_estimators": 30},
        timing={"n_estimators": 20},
    )
    test = rows[rows.slice == "test"]
    return trained, test[test.snapshot_at == test.snapshot_at.max()].reset_index(drop=True)


def _score(trained: Trained, frame: pd.DataFrame, **changes) -> pd.DataFrame:
    args = {
        "snapshot": frame.snapshot_at.iloc[0],
        "lead_days": 3,
        "medium": 0.3,
        "high": 0.6,
        "model_version": "repurchase/4",
    }
    return score_frame(trained, frame, **{**args, **changes})


def test_bands_change_exactly_at_the_thresholds(tiny):
    trained, frame = tiny
    p = trained.predict(frame).probability.to_numpy()
    # Thresholds set to probabilities the model gives (calibration makes plateaus, so several
    # shoppers share each), so some scores sit exactly on them.
    levels = np.unique(p)
    assert len(levels) >= 4
    medium, high = levels[len(levels) // 3], levels[2 * len(levels) // 3]
    scored = _score(trained, frame, medium=medium, high=high)
    np.testing.assert_array_equal(scored.probability, p)
    assert (scored.band[p == medium] == "medium").all() and (p == medium).any()
    assert (scored.band[p == high] == "high").all() and (p == high).any()
    assert (scored.band[p < medium] == "low").all()
    assert (scored.band[(p > medium) & (p < high)] == "medium").all()
    assert (scored.band[p > high] == "high").all()
    assert set(scored.band) == {"low", "medium", "high"}


def test_likelihood_is_the_probability_in_whole_percent(tiny):
    trained, frame = tiny
    scored = _score(trained, frame)
    assert scored.likelihood.dtype.kind == "i"
    assert (np.abs(scored.likelihood - scored.probability * 100) <= 0.5).all()
    assert scored.likelihood.between(0, 100).all()


def test_dates_count_from_the_snapshot_day_and_contact_is_never_before_it(tiny):
    trained, frame = tiny
    snapshot = frame.snapshot_at.iloc[0] + pd.Timedelta(hours=15)  # any time of that day
    lead = 3
    scored = _score(trained, frame, snapshot=snapshot, lead_days=lead)
    day = snapshot.floor("D").tz_localize(None)
    pred = trained.predict(frame)
    expected = day + pd.to_timedelta(np.round(pred.expected_days), unit="D")
    np.testing.assert_array_equal(scored.expected_next_order_date, expected)
    assert (scored.next_order_date_low <= scored.expected_next_order_date).all()
    assert (scored.expected_next_order_date <= scored.next_order_date_high).all()
    assert (scored.contact_date >= day).all()
    # A shopper due within the lead time is contacted on the day itself, the others `lead`
    # days before their expected date.
    due_soon = np.round(pred.expected_days.to_numpy()) < lead
    assert due_soon.any() and (~due_soon).any()
    assert (scored.contact_date[due_soon] == day).all()
    later = scored[~due_soon]
    assert (later.expected_next_order_date - later.contact_date == pd.Timedelta(days=lead)).all()


def test_drivers_are_the_largest_contributions_largest_first(tiny):
    trained, frame = tiny
    scored = _score(trained, frame)
    X = trained.inputs(frame)
    contrib = pd.DataFrame(trained.propensity.contributions(X), columns=X.columns)
    size = contrib.abs().to_numpy()
    top = -np.sort(-size, axis=1)[:, :DRIVERS]
    for k in range(DRIVERS):
        name, shap = scored[f"driver_{k + 1}"], scored[f"driver_{k + 1}_shap"]
        # Each driver's value is that feature's contribution for that shopper...
        np.testing.assert_allclose(shap, [contrib.at[i, n] for i, n in enumerate(name)])
        # ...and the k-th largest by size.
        np.testing.assert_allclose(shap.abs(), top[:, k])
    assert (scored.driver_1 != scored.driver_2).all() and (scored.driver_2 != scored.driver_3).all()
    assert scored.driver_1.isin(X.columns).all()


def test_every_row_names_the_model_version_and_the_as_of(tiny):
    trained, frame = tiny
    snapshot = frame.snapshot_at.iloc[0]
    scored = _score(trained, frame, model_version="repurchase/9")
    assert scored.user_id.tolist() == frame.user_id.tolist()
    assert (scored.model_version == "repurchase/9").all()
    assert (scored.as_of == snapshot).all()
    assert len(scored) == len(frame) > 100
