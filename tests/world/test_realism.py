"""The realism table: each measure on a hand-built log whose answers are known, and the whole
table on a small generated world."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from cadence.world import WorldConfig, realism_table
from cadence.world._realism import _auc

START = pd.Timestamp("2024-01-01", tz="UTC")
END = START + pd.Timedelta(days=500)

# Purchase days per customer (10:00 that day; a repeated day is a second order at 15:00).
# "a" buys once; "b" and "c" come back; "e" is a heavy weekly buyer; "d" starts late.
ORDER_DAYS = {
    "a": [0],
    "b": [0, 10, 40, 100],
    "c": [20, 20, 25, 55, 85, 190, 360, 383, 385],
    "e": [50 + 7 * i for i in range(14)],
    "d": [400, 420],
}
# Lines of replenished categories (2 units each), by customer, sku and purchase day; every
# order also holds one unit of snacks.
CYCLE_LINES = {
    ("c", "formula"): [20, 20, 55, 85],  # gaps 35, 30 (one day, two orders: one purchase day)
    ("e", "diapers"): [50, 57, 64, 78],  # gaps 7, 7, 14
    ("b", "formula"): [0, 40],  # one gap: too few to count
    ("b", "diapers"): [0, 10, 100],  # gaps 10, 90
}


def _at(day: int, second: bool = False) -> pd.Timestamp:
    return START + pd.Timedelta(days=day, hours=15 if second else 10)


def _log() -> dict[str, pd.DataFrame]:
    orders, items = [], []
    for user, days in ORDER_DAYS.items():
        for i, day in enumerate(days):
            oid = len(orders)
            orders.append((oid, user, _at(day, second=day in days[:i])))
            items.append((oid, "snack", 1))
    frame = pd.DataFrame(orders, columns=["order_id", "user_id", "ordered_at"])
    for (user, sku), days in CYCLE_LINES.items():
        mine = frame[frame.user_id == user]
        for oid in mine.order_id[mine.ordered_at.dt.floor("D").isin([_day(d) for d in days])]:
            items.append((oid, sku, 2))
    products = pd.DataFrame(
        {
            "sku": ["formula", "diapers", "snack"],
            "category": ["infant_formula", "diapers", "snacks"],
        }
    )
    return {
        "orders": frame.sample(frac=1.0, random_state=1),  # the measures may not rely on order
        "items": pd.DataFrame(items, columns=["order_id", "sku", "quantity"]),
        "products": products,
        "shipments": pd.DataFrame({"late": pd.array([True, False, False, False, None])}),
    }


def _day(day: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=day)


# (user, snapshot day, p_30d). Active: an order in the 365 days before the snapshot.
ORACLE = [
    ("b", 5, 0.9),  # active; orders on day 10: bought
    ("a", 200, 0.0),  # active; never again: not bought
    ("a", 400, 0.0),  # last order 400 days before: not active
    ("d", 300, 0.5),  # no order yet: not active
    ("b", 50, 0.3),  # active; next order 50 days on: not bought
    ("e", 60, 0.3),  # active; orders on day 64: bought (a tie with b's 0.3)
    ("c", 480, 0.0),  # active, but its 30 days run past the data's end: no outcome
    ("zz", 10, 0.2),  # never ordered
]


def _oracle() -> pd.DataFrame:
    return pd.DataFrame(
        [(u, _day(d), p) for u, d, p in ORACLE], columns=["user_id", "snapshot_at", "p_30d"]
    )


def _table(**changes) -> dict[str, dict]:
    log = _log()
    args = {
        "end": END,
        "items": log["items"],
        "products": log["products"],
        "shipments": log["shipments"],
        "oracle": _oracle(),
    }
    rows = realism_table(changes.pop("orders", log["orders"]), **{**args, **changes})
    return {r["measure"]: r for r in rows}


@pytest.mark.unit
def test_twelve_month_cohort_measures():
    t = _table()
    # Followed 365 days (first order by day 135): a, b, c, e with 1, 4, 8 and 14 orders.
    one = t["new customers with exactly one order in 12 months"]
    assert one["figures"] == [0.25] and one["n"] == 4 and one["met"] is False
    assert one["value"] == "25.0%"
    stats = t["orders in 12 months: mean / median / p90"]
    assert stats["figures"] == pytest.approx([6.75, 6.0, 12.2])
    assert stats["met"] is False and stats["value"] == "6.8 / 6 / 12.2"
    heavy = t["customers with over 12 orders in 12 months"]
    assert heavy["figures"] == [0.25] and heavy["met"] is True


@pytest.mark.unit
def test_active_months_count_only_customers_followed_long_enough():
    t = _table()
    month1 = t["active in month 1 after the first order"]
    assert month1["figures"] == [0.8] and month1["n"] == 5 and month1["met"] is False
    months = t["active in months 1, 2, 3, 6, 12"]
    # d (first order on day 400) is followed through month 3 only.
    assert months["figures"] == pytest.approx([0.8, 0.6, 0.4, 0.25, 0.25])
    assert months["n"] == 4 and months["met"] is True  # non-increasing: ties allowed


@pytest.mark.unit
def test_a_month_with_more_active_customers_than_the_one_before_is_not_falling():
    log = _log()
    # b's day-100 order moves into month 6 (days 151-180): month 6 now beats month 3.
    orders = log["orders"].copy()
    orders.loc[orders.ordered_at == _at(100), "ordered_at"] = _at(160)
    months = _table(orders=orders)["active in months 1, 2, 3, 6, 12"]
    assert months["figures"] == pytest.approx([0.8, 0.6, 0.4, 0.5, 0.25])
    assert months["met"] is False


@pytest.mark.unit
def test_gaps_between_purchase_days_in_the_first_twelve_months():
    row = _table()["days between orders: median (IQR)"]
    # c's second order on day 20 is no new visit; its day-385 order lies past its 12 months.
    gaps = [10, 30, 60] + [5, 30, 30, 105, 170, 23] + [7] * 13 + [20]
    assert row["n"] == len(gaps) and row["met"] is None
    assert row["figures"] == pytest.approx(list(np.quantile(gaps, [0.5, 0.25, 0.75])))
    assert row["value"] == "7 (7-26.5)"


@pytest.mark.unit
def test_gap_cv_per_shopper_and_replenished_category():
    row = _table()["gap CV per shopper, replenished categories: median"]
    cvs = [np.std(g, ddof=1) / np.mean(g) for g in ([35, 30], [7, 7, 14], [10, 90])]
    assert row["n"] == 3
    assert row["figures"] == pytest.approx([np.median(cvs)])  # e's diapers: 0.433
    assert row["met"] is True and row["value"] == "0.43"
    # Counted as snacks, the same purchases are no replenishment at all.
    products = _log()["products"].assign(category="snacks")
    none = _table(products=products)["gap CV per shopper, replenished categories: median"]
    assert none["n"] == 0 and none["met"] is None and none["value"] == "n/a"


@pytest.mark.unit
def test_units_per_order_and_late_parcels():
    t = _table()
    units = t["units per order: mean"]
    # 30 orders with one snack each, plus 13 replenishment lines of 2 units.
    assert units["figures"] == pytest.approx([(30 + 2 * 13) / 30]) and units["n"] == 30
    assert units["met"] is False
    late = t["late parcels"]  # a parcel not yet delivered has no lateness
    assert late["figures"] == [0.25] and late["n"] == 4 and late["met"] is False


@pytest.mark.unit
def test_oracle_measures_on_active_shoppers():
    t = _table()
    zero = t["true 30-day probability 0, active shoppers"]
    assert zero["figures"] == [0.4] and zero["n"] == 5 and zero["met"] is False
    auc = t["oracle 30-day AUC, active shoppers"]
    # Bought: 0.9, 0.3; not bought: 0.0, 0.3 -> (1 + 1 + 1 + 0.5) / 4.
    assert auc["figures"] == [0.875] and auc["n"] == 4 and auc["met"] is True


@pytest.mark.unit
def test_an_order_at_the_snapshot_is_an_outcome_and_one_a_second_before_is_history():
    orders = pd.DataFrame(
        {
            "order_id": [0, 1],
            "user_id": ["x", "y"],
            "ordered_at": [_day(100), _day(100) - pd.Timedelta(seconds=1)],
        }
    )
    oracle = pd.DataFrame(
        {"user_id": ["x", "y"], "snapshot_at": [_day(100)] * 2, "p_30d": [0.7, 0.0]}
    )
    t = _table(orders=orders, oracle=oracle, items=None)
    # x has no order before the snapshot: not active; y is active, and has no later order.
    assert t["true 30-day probability 0, active shoppers"]["n"] == 1
    assert t["true 30-day probability 0, active shoppers"]["figures"] == [1.0]
    assert math.isnan(t["oracle 30-day AUC, active shoppers"]["figures"][0])


@pytest.mark.unit
def test_a_log_too_short_leaves_cohort_measures_unmeasured():
    t = _table(end=START + pd.Timedelta(days=300))
    for name in [
        "new customers with exactly one order in 12 months",
        "orders in 12 months: mean / median / p90",
        "active in months 1, 2, 3, 6, 12",
    ]:
        assert t[name]["met"] is None and "n/a" in t[name]["value"], name


@pytest.mark.unit
def test_auc_counts_ties_as_half_like_the_textbook_definition():
    rng = np.random.default_rng(0)
    score = rng.integers(0, 20, 400) / 20  # many ties
    label = rng.random(400) < score
    pos, neg = score[label], score[~label]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert _auc(score, label) == pytest.approx(pairs / (pos.size * neg.size))


# Long enough for a 12-month cohort, small enough to generate in a second or two.
# A mid-size world, long enough that new customers have a whole first year in the data.
REALISM_WORLD = WorldConfig(users=10_000, days=546, seed=3, start=dt.date(2025, 1, 1))

TARGETS = {
    "new customers with exactly one order in 12 months": lambda f: 0.30 <= f[0] <= 0.50,
    "active in month 1 after the first order": lambda f: 0.15 <= f[0] <= 0.35,
    "active in months 1, 2, 3, 6, 12": lambda f: all(np.diff(f) <= 0),
    "orders in 12 months: mean / median / p90": lambda f: 2 <= f[1] <= 4,
    "customers with over 12 orders in 12 months": lambda f: f[0] > 0,
    "days between orders: median (IQR)": None,
    "gap CV per shopper, replenished categories: median": lambda f: 0.3 <= f[0] <= 0.5,
    "units per order: mean": lambda f: f[0] >= 3,
    "true 30-day probability 0, active shoppers": lambda f: f[0] <= 0.05,
    "late parcels": lambda f: 0.05 <= f[0] <= 0.10,
    "oracle 30-day AUC, active shoppers": lambda f: 0.80 <= f[0] <= 0.90,
}


@pytest.mark.data
def test_a_generated_world_has_every_measure_and_met_follows_the_figures(tmp_path):
    from cadence.flows.steps.world import generate, realism

    manifest = generate(REALISM_WORLD, tmp_path / "raw", tmp_path / "truth")
    rows = realism(tmp_path / "raw", tmp_path / "truth", manifest)
    assert [r["measure"] for r in rows] == list(TARGETS)
    for r in rows:
        name = r["measure"]
        assert r["n"] > 0 and all(math.isfinite(f) for f in r["figures"]), name
        assert r["value"] and "n/a" not in r["value"], name
        check = TARGETS[name]
        assert r["met"] is (None if check is None else check(r["figures"])), name
    # And the world meets every target it is held to.
    assert [r["measure"] for r in rows if r["met"] is False] == []
