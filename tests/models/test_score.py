"""The scored list, directly: which snapshot, who is eligible, each column of a scored row, the
drivers in words, and the files written beside the list, on a tiny model fitted here to a few
thousand rows built here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cadence.models._score import (
    DRIVERS,
    VALUE,
    ListInfo,
    describe_driver,
    describe_input,
    eligible,
    percentiles,
    pick_snapshot,
    score_frame,
    summary,
    write_list,
)
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


def test_the_list_is_most_likely_first_and_names_its_horizon(tiny):
    trained, frame = tiny
    scored = _score(trained, frame)
    p = scored.p_order_30d.to_numpy()
    assert (np.diff(p) <= 0).all()
    # Equal probabilities in user-id order, so two runs list them alike.
    ties = scored.groupby("p_order_30d").user_id.apply(lambda u: u.is_monotonic_increasing)
    assert ties.all()
    assert sorted(scored.user_id) == sorted(frame.user_id) and scored.index.tolist() == list(
        range(len(frame))
    )
    by_user = trained.predict(frame).probability.set_axis(frame.user_id)
    np.testing.assert_array_equal(p, by_user[scored.user_id].to_numpy())
    assert "probability" not in scored and "likelihood" not in scored
    # The 7-day model's list says so in its column.
    seven = _score(dataclasses.replace(trained, horizon_days=7), frame)
    assert "p_order_7d" in seven and "p_order_30d" not in seven
    np.testing.assert_array_equal(seven.p_order_7d, scored.p_order_30d)


def test_percentile_is_the_share_at_or_below_rounded_up():
    p = np.array([0.9, 0.5, 0.5, 0.1, 0.7, 0.5, 0.2, 0.3, 0.05, 0.6])
    # Ten scores: the lowest is the 10th percentile; three equal ones share the 70th (seven of
    # the ten score 0.5 or less).
    assert percentiles(p).tolist() == [100, 70, 70, 20, 90, 70, 30, 40, 10, 80]
    assert percentiles(np.array([0.4])).tolist() == [100]
    many = np.random.default_rng(0).random(1234)
    pct = percentiles(many)
    assert pct.min() == 1 and pct.max() == 100
    share = (many[:, None] >= many[None, :]).mean(axis=1)
    np.testing.assert_array_equal(pct, np.ceil(np.round(share * 100, 9)).astype(int))


def test_bands_and_percentiles_of_a_list(tiny):
    trained, frame = tiny
    p = trained.predict(frame).probability.to_numpy()
    # Thresholds set to probabilities the model gives, so some scores sit exactly on them.
    levels = np.unique(p)
    assert len(levels) >= 4
    medium, high = levels[len(levels) // 3], levels[2 * len(levels) // 3]
    scored = _score(trained, frame, medium=medium, high=high)
    q = scored.p_order_30d
    assert (scored.band[q == medium] == "medium").all() and (q == medium).any()
    assert (scored.band[q == high] == "high").all() and (q == high).any()
    assert (scored.band[q < medium] == "low").all()
    assert (scored.band[(q > medium) & (q < high)] == "medium").all()
    assert (scored.band[q > high] == "high").all()
    assert scored.band.tolist() == sorted(scored.band, key=["high", "medium", "low"].index)
    assert scored.percentile.iloc[0] == 100 and scored.percentile.is_monotonic_decreasing
    np.testing.assert_array_equal(scored.percentile, percentiles(q.to_numpy()))


def test_dates_count_from_the_snapshot_day_and_contact_only_where_suggested(tiny):
    trained, frame = tiny
    snapshot = frame.snapshot_at.iloc[0] + pd.Timedelta(hours=15)  # any time of that day
    lead = 3
    scored = _score(trained, frame, snapshot=snapshot, lead_days=lead)
    day = snapshot.floor("D").tz_localize(None)
    pred = trained.predict(frame).set_axis(frame.user_id).loc[scored.user_id]
    expected = day + pd.to_timedelta(np.round(pred.expected_days.to_numpy()), unit="D")
    np.testing.assert_array_equal(scored.expected_next_order_date, expected)
    assert (scored.next_order_date_low <= scored.expected_next_order_date).all()
    assert (scored.expected_next_order_date <= scored.next_order_date_high).all()
    suggested = scored.band.isin(["high", "medium"])
    assert suggested.any() and (~suggested).any()
    assert scored.contact_date[~suggested].isna().all()
    contacted = scored[suggested]
    assert contacted.contact_date.notna().all() and (contacted.contact_date >= day).all()
    # A shopper due within the lead time is contacted on the day itself, the others `lead`
    # days before their expected date.
    due_soon = np.round(pred.expected_days.to_numpy()[suggested.to_numpy()]) < lead
    assert due_soon.any() and (~due_soon).any()
    assert (contacted.contact_date[due_soon] == day).all()
    later = contacted[~due_soon]
    assert (later.expected_next_order_date - later.contact_date == pd.Timedelta(days=lead)).all()
    # The bands that get a contact date are a decision: high only, here.
    only_high = _score(trained, frame, contact_bands=["high"])
    assert only_high.contact_date.notna().tolist() == (only_high.band == "high").tolist()


def test_drivers_are_the_largest_contributions_in_words(tiny):
    trained, frame = tiny
    scored = _score(trained, frame)
    X = trained.inputs(frame).set_axis(frame.user_id).loc[scored.user_id].reset_index(drop=True)
    contrib = pd.DataFrame(trained.propensity.contributions(X), columns=X.columns)
    size = contrib.abs().to_numpy()
    top = -np.sort(-size, axis=1)[:, :DRIVERS]
    for k in range(1, DRIVERS + 1):
        name, shap = scored[f"driver_{k}_feature"], scored[f"driver_{k}_shap"]
        # Each driver's value is that feature's contribution for that shopper...
        np.testing.assert_allclose(shap, [contrib.at[i, n] for i, n in enumerate(name)])
        # ...and the k-th largest by size.
        np.testing.assert_allclose(shap.abs(), top[:, k - 1])
        value = scored[f"driver_{k}_value"]
        np.testing.assert_array_equal(value, [X.at[i, n] for i, n in enumerate(name)])
        words = [describe_driver(*row) for row in zip(name, value, shap, strict=True)]
        assert scored[f"driver_{k}"].tolist() == words
    assert (scored.driver_1_feature != scored.driver_2_feature).all()
    assert scored.driver_1_feature.isin(X.columns).all()
    first = scored.iloc[0]
    direction = "raises" if first.driver_1_shap > 0 else "lowers"
    assert first.driver_1.endswith(f"({direction})")
    assert not any("_" in d for d in scored.driver_1)  # words, not column names


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("next_due_in_days", 2.4, "next replenishment due in 2 days"),
        ("diapers_due_in_days", 0.6, "diapers due in 1 day"),
        ("pet_food_due_in_days", -3.2, "pet food overdue by 3 days"),
        ("coffee_due_in_days", 0.2, "coffee due today"),
        ("gap_due_in_days", 5.0, "next order due in 5 days, by the usual gap between orders"),
        ("next_due_in_days", np.nan, "next replenishment: none"),
        ("orders_30d", 3.0, "orders placed in the last 30 days: 3"),
        ("spend_90d", 123.456, "amount paid in the last 90 days: 123.46"),
        ("cart_open_value", 20.0, "value of the items in the cart at the snapshot: 20.00"),
        ("days_since_last_order", 12.6, "days since the most recent order: 13"),
        ("delivery_days_90d", 0.4, "mean days from order to delivery, last 90 days: under 1"),
        ("pet_food_gap_mean", 44.7, "mean days between pet food purchases: 45"),
        (
            "coupon_redemption_rate_365d",
            0.5,
            "coupons redeemed over coupons received, last 365 days: 50%",
        ),
        ("coffee_days_since", np.nan, "days since the last coffee purchase: none"),
        ("dueness", 1.0512, "days since the last order day over the mean gap (1 = due now): 1.05"),
        ("membership_vip", 1.0, "membership level is vip"),
        ("device_ios", 0.0, "main device is not ios"),
        ("city_tier", 3.0, "city tier of the home address (1-5): 3"),
    ],
)
def test_an_input_reads_in_words(name, value, words):
    assert describe_input(name, value) == words


def test_a_driver_says_which_way_it_moved_the_score():
    said = "orders placed in the last 30 days"
    assert describe_driver("orders_30d", 3.0, 0.4) == f"{said}: 3 (raises)"
    assert describe_driver("orders_30d", 0.0, -0.1) == f"{said}: 0 (lowers)"
    assert describe_driver("orders_30d", 0.0, 0.0) == ""  # it did not move the score


def _info(scored: pd.DataFrame, **changes) -> ListInfo:
    args = {
        "model_name": "repurchase",
        "model_version": "4",
        "horizon_days": 30,
        "as_of": scored.as_of.iloc[0],
        "written_at": dt.datetime(2025, 5, 1, 6, 15, 2, tzinfo=dt.UTC),
        "calibration": "beta",
        "medium": 0.3,
        "high": 0.6,
        "contact_bands": ("high", "medium"),
        "lead_days": 3,
        "active_days": 365,
        "withdrawn": 7,
        "drivers": "treeshap",
        "feature_build": "ab12cd34ef56" * 5,
        "features_built_at": dt.datetime(2025, 4, 30, 23, 0, tzinfo=dt.UTC),
    }
    return ListInfo(**{**args, **changes})


def _value(frame: pd.DataFrame) -> pd.DataFrame:
    """Expected spend per user as `cadence.models._value.expected_spend` gives it, shuffled and
    with one user the list does not hold."""
    rng = np.random.default_rng(3)
    users = [*frame.user_id.sample(frac=1, random_state=1), "not-in-the-list"]
    spend = rng.gamma(2.0, 20.0, len(users))
    return pd.DataFrame(
        {VALUE[0]: spend, VALUE[1]: spend * 0.2, VALUE[2]: spend * 2.5 + 0.004},
        index=pd.Index(users, name="user_id"),
    )


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    trained, frame = tiny
    scored = _score(trained, frame, value=_value(frame))
    folder = tmp_path_factory.mktemp("list")
    write_list(scored, folder, _info(scored))
    return folder, scored


def test_the_list_comes_with_its_data_dictionary(written):
    folder, scored = written
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "schema.json",
        "scores.csv",
        "scores.parquet",
    ]
    schema = json.loads((folder / "schema.json").read_text())
    csv_columns = pd.read_csv(folder / "scores.csv", nrows=0).columns.tolist()
    parquet = pq.read_schema(folder / "scores.parquet")
    assert [c["name"] for c in schema["files"]["scores.csv"]] == csv_columns
    assert [c["name"] for c in schema["files"]["scores.parquet"]] == parquet.names
    assert [c["type"] for c in schema["files"]["scores.parquet"]] == [str(t) for t in parquet.types]
    assert all(c["description"] for f in schema["files"].values() for c in f)
    assert schema["model"] == "repurchase/4" and schema["horizon_days"] == 30
    assert schema["rows"] == len(scored) and schema["as_of"] == f"{scored.as_of.iloc[0]:%Y-%m-%d}"
    assert schema["feature_build"] == "ab12cd34ef56" * 5 and schema["calibration"] == "beta"
    assert schema["bands"]["medium"] == 0.3 and schema["bands"]["high"] == 0.6
    assert sum(schema["bands"]["rows"].values()) == len(scored)
    readme = (folder / "README.md").read_text()
    for column in parquet.names:
        assert f"| `{column}` |" in readme
    for fact in (
        "repurchase version 4",
        f"as of {scored.as_of.iloc[0]:%Y-%m-%d}",
        "horizon 30 days",
        f"{len(scored):,} active shoppers",
        "high from 0.6",
        "medium from 0.3 to below 0.6",
        "7 who withdrew consent",
        "Feature build: ab12cd34ef56,",
        "## How drivers read",
        "beta calibration",
    ):
        assert fact in readme, fact
    assert "exactly 0" not in readme  # beta gives no zeros, so there is nothing to explain


def test_the_csv_reads_in_words_with_one_date_format(written):
    folder, scored = written
    text = (folder / "scores.csv").read_text()
    csv = pd.read_csv(folder / "scores.csv", keep_default_na=False)
    assert len(csv) == len(scored) and csv.user_id.tolist() == scored.user_id.tolist()
    assert not [c for c in csv if c.endswith(("_feature", "_value", "_shap"))]
    dates = ["contact_date", "expected_next_order_date", "next_order_date_low"]
    for col in [*dates, "next_order_date_high", "as_of"]:
        filled = csv[col][csv[col] != ""]
        assert filled.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), col
        pd.to_datetime(filled, format="%Y-%m-%d")  # every one parses in that one format
    assert (csv.as_of == f"{scored.as_of.iloc[0]:%Y-%m-%d}").all()
    assert (csv.contact_date == "").tolist() == (csv.band == "low").tolist()
    assert csv.driver_1.str.endswith(("(raises)", "(lowers)")).all()
    assert "T00:00:00" not in text and "driver_1_shap" not in text
    np.testing.assert_allclose(csv.p_order_30d, scored.p_order_30d, atol=5e-5)
    assert ((csv.p_order_30d > 0) & (csv.p_order_30d < 1)).all()


def test_the_parquet_keeps_what_analysts_and_feast_read(written):
    folder, scored = written
    table = pq.read_table(folder / "scores.parquet")
    assert str(table.schema.field("as_of").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("contact_date").type) == "date32[day]"
    back = table.to_pandas()
    assert back.user_id.tolist() == scored.user_id.tolist()
    assert (back.as_of == scored.as_of.iloc[0]).all()
    for k in range(1, DRIVERS + 1):
        assert {f"driver_{k}_feature", f"driver_{k}_value", f"driver_{k}_shap"} <= set(back)


def test_isotonic_zeros_are_counted_and_explained(tiny, tmp_path):
    trained, frame = tiny
    scored = _score(trained, frame)
    scored.loc[scored.index[-5:], "p_order_30d"] = 0.0  # as an isotonic plateau at 0 gives
    assert summary(scored)["exact_zeros"] == 5
    write_list(scored, tmp_path, _info(scored, calibration="isotonic"))
    readme = (tmp_path / "README.md").read_text()
    assert "5 shoppers have a probability of exactly 0" in readme
    assert "no buyer among the calibration shoppers" in readme


def test_the_csv_rounds_to_four_decimals_but_never_to_a_certainty(written):
    from cadence.models._score import tables

    _, scored = written
    scored = scored.copy()
    scored.loc[0, "p_order_30d"], scored.loc[1, "p_order_30d"] = 0.999996, 2e-7
    scored.loc[2, "p_order_30d"] = 0.123456
    _, csv = tables(scored)
    shown = csv["p_order_30d"].to_pylist()
    assert shown[:3] == [0.999996, 2e-7, 0.1235]


def test_expected_spend_joins_by_user_and_is_empty_without_it(tiny):
    trained, frame = tiny
    value = _value(frame)
    scored = _score(trained, frame, value=value)
    cols = scored.columns.tolist()
    assert cols[cols.index("next_order_date_high") + 1 : cols.index("driver_1")] == list(VALUE)
    expected = value.reindex(scored.user_id)
    for col in VALUE:
        np.testing.assert_array_equal(scored[col].to_numpy(), expected[col].to_numpy())
    bare = _score(trained, frame)
    assert all(bare[col].isna().all() for col in VALUE)
    assert bare.drop(columns=list(VALUE)).equals(scored.drop(columns=list(VALUE)))


def test_expected_spend_is_money_in_the_csv_and_explained(written):
    folder, scored = written
    csv = pd.read_csv(folder / "scores.csv")
    for col in VALUE:
        np.testing.assert_allclose(csv[col], scored[col].round(2), atol=1e-9)
        assert (csv[col].round(2) == csv[col]).all()
    back = pq.read_table(folder / "scores.parquet").to_pandas()
    np.testing.assert_array_equal(back[VALUE[0]], scored[VALUE[0]])  # full precision there
    readme = (folder / "README.md").read_text()
    assert "BG/NBD's expected number of order days times Gamma-Gamma's" in readme
    assert "a shopper with a single order day gets the population's mean" in readme
    schema = json.loads((folder / "schema.json").read_text())
    assert schema["expected_spend"]["error"] is None


def test_a_failed_value_fit_leaves_the_column_empty_with_the_reason(tiny, tmp_path):
    trained, frame = tiny
    scored = _score(trained, frame)
    reason = "Gamma-Gamma needs at least 10 shoppers with a repeat purchase"
    write_list(scored, tmp_path, _info(scored, value_error=reason))
    readme = (tmp_path / "README.md").read_text()
    said = "Expected spend: empty for every shopper; it could not be estimated from this "
    assert f"{said}order log: {reason}." in readme
    csv = pd.read_csv(tmp_path / "scores.csv")
    assert all(csv[col].isna().all() for col in VALUE)
    assert json.loads((tmp_path / "schema.json").read_text())["expected_spend"]["error"] == reason
