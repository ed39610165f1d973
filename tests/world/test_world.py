"""The simulated world: determinism, schemas and the behaviour it promises to plant."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cadence.ingest._tables import SCHEMAS
from cadence.world import WorldConfig, billed_weight
from tests.world.conftest import SMALL, run_world

pytestmark = pytest.mark.data

START = pd.Timestamp(SMALL.start, tz="UTC")
END = START + pd.Timedelta(days=SMALL.days)


def test_same_seed_same_tables_other_seed_other_tables():
    cfg = WorldConfig(users=300, days=40, seed=5)
    a, b = run_world(cfg), run_world(cfg)
    c = run_world(dataclasses.replace(cfg, seed=6))
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["orders"].equals(c["orders"])


def test_raw_tables_have_the_contract_schemas(small_world):
    for name, schema in SCHEMAS.items():
        assert small_world[name].schema == schema, name


def test_events_lie_inside_the_period_and_after_signup(frames):
    orders = frames["orders"]
    assert orders.ordered_at.min() >= START
    assert orders.ordered_at.max() < END
    signup = frames["users"].set_index("user_id").signup_at
    assert (orders.ordered_at.to_numpy() > signup.loc[orders.user_id].to_numpy()).all()
    for table, col in [
        ("sessions", "started_at"),
        ("returns", "requested_at"),
        ("service_contacts", "ts"),
        ("cart_events", "ts"),
    ]:
        ts = frames[table][col]
        assert ts.max() < END, table
    delivered = frames["shipments"].delivered_at.dropna()
    assert delivered.max() < END


def test_replenishment_follows_each_shoppers_own_noisy_cycle(frames):
    """Formula about every 30 days, diapers 20, pet food 45: each shopper's own mean cycle
    spreads around the category's (about 30%), and a typical gap is the shopper's own cycle,
    with real noise; a skipped cycle (bought elsewhere) or a lapse makes some gaps far longer."""
    items = frames["order_items"].merge(frames["products"][["sku", "category"]], on="sku")
    items = items.merge(frames["orders"][["order_id", "user_id", "ordered_at"]], on="order_id")
    truth = frames["truth_cycles"]
    for category, mean in [("infant_formula", 30.0), ("diapers", 20.0), ("pet_food", 45.0)]:
        own = truth[truth.category == category].set_index("user_id").mean_days
        assert abs(own.mean() - mean) <= 0.05 * mean, (category, own.mean())
        spread = (own.quantile(0.75) - own.quantile(0.25)) / own.median()
        assert 0.25 < spread < 0.6, (category, spread)
        buys = items[(items.category == category) & items.user_id.isin(own.index)]
        buys = buys.sort_values(["user_id", "ordered_at"])
        days = buys.ordered_at.dt.floor("D")
        gaps = days.groupby(buys.user_id).diff().dropna().dt.days
        gaps = gaps[gaps > 0]
        assert len(gaps) > 80, category
        ratio = gaps / buys.loc[gaps.index, "user_id"].map(own).to_numpy()
        # A bundled purchase comes a few days early, a stockpile later, a skip a cycle later.
        assert 0.85 <= ratio.median() <= 1.1, (category, ratio.median())
        typical = ratio[ratio < 1.6]
        assert 0.15 <= typical.std() <= 0.4, (category, typical.std())
        assert (ratio > 1.6).mean() < 0.3, (category, (ratio > 1.6).mean())


def test_formula_buyers_also_buy_diapers(frames):
    items = frames["order_items"].merge(frames["products"][["sku", "category"]], on="sku")
    items = items.merge(frames["orders"][["order_id", "user_id"]], on="order_id")
    by_cat = items.groupby("category").user_id.apply(set)
    formula, diapers = by_cat["infant_formula"], by_cat["diapers"]
    buyers = set(items.user_id)
    share_with = len(formula & diapers) / len(formula)
    share_without = len(diapers - formula) / len(buyers - formula)
    assert share_with > 5 * share_without


def test_billed_weight_is_max_of_actual_and_volumetric(frames):
    s = frames["shipments"]
    expected = billed_weight(s.actual_weight_kg.to_numpy(), s.volume_cm3.to_numpy())
    np.testing.assert_array_equal(s.billed_weight_kg.to_numpy(), expected)
    assert (s.volume_cm3 / 6000 > s.actual_weight_kg).any()  # bulky parcels exist


def test_no_line_ships_from_a_node_without_stock(frames):
    items = frames["order_items"].dropna(subset=["shipment_id"])
    items = items.merge(frames["shipments"][["shipment_id", "node_id"]], on="shipment_id")
    items = items.merge(frames["orders"][["order_id", "ordered_at"]], on="order_id")
    items["date"] = items.ordered_at.dt.date
    demand = items.groupby(["date", "node_id", "sku"]).quantity.sum().rename("demand")
    inv = frames["inventory"].set_index(["date", "node_id", "sku"])
    joined = inv.join(demand, how="right")
    assert joined.on_hand.notna().all()  # every shipped line's node carries that SKU
    assert (joined.demand <= joined.on_hand).all()
    assert (joined.demand == joined.shipped).all()
    assert (frames["inventory"].on_hand == 0).any()  # stock-outs happen


def test_delivery_worse_far_away_and_in_remote_zones(frames):
    s = frames["shipments"].dropna(subset=["delivered_at"])
    days = (s.delivered_at - s.shipped_at).dt.total_seconds() / 86400
    by_zone = days.groupby(s.zone).mean()
    assert by_zone["same_city"] < by_zone["same_province"] < by_zone["cross_region"]
    assert by_zone["cross_region"] < by_zone["remote"]
    assert np.corrcoef(s.distance_km, days)[0, 1] > 0.5
    # The shop promises farther zones more days, so about as many parcels are late everywhere.
    promised = (s.promised_at - s.shipped_at).dt.total_seconds().groupby(s.zone).mean()
    assert promised["same_city"] < promised["same_province"] < promised["remote"]
    assert 0.03 < s.late.astype(float).mean() < 0.15


def test_coupon_response_differs_between_users(frames):
    c = frames["coupons"].merge(
        frames["truth_latent"][["user_id", "coupon_response"]], on="user_id"
    )
    quartile = pd.qcut(c.coupon_response, 4, labels=False)
    rate = c.redeemed_at.notna().groupby(quartile).mean()
    assert rate.loc[3] > 1.3 * rate.loc[0]
    # Price-sensitive places respond more: the lower tiers carry higher responsiveness.
    users = frames["users"].merge(frames["truth_latent"], on="user_id")
    by_tier = users.coupon_response.groupby(users.city_tier).median()
    assert by_tier.loc[5] > 1.5 * by_tier.loc[1]


def test_sensitive_attributes_reach_behaviour_only_through_place_and_life_stage(frames):
    users = frames["users"]
    # Age band differs by city tier, and gender by region: the proxies an audit must find.
    young = users.age_band.isin(["18-24", "25-34"]).groupby(users.city_tier).mean()
    assert young.loc[1] > young.loc[5] + 0.1
    female = (users.gender == "female").groupby(users.region).mean()
    assert female.max() - female.min() > 0.04


@pytest.mark.parametrize("horizon", SMALL.horizons_days)
def test_oracle_agrees_with_observed_outcomes(frames, horizon):
    truth = frames["truth_oracle"]
    p = truth[f"p_{horizon}d"]
    assert p.between(0, 1).all()
    # A lapsed shopper may still come back: never a certain no, but far less likely.
    assert (p[~truth.alive] > 0).all()
    assert p[~truth.alive].mean() < p[truth.alive].mean() / 3
    inside = truth[truth.snapshot_at + pd.Timedelta(days=horizon) <= END].copy()
    orders = frames["orders"][["user_id", "ordered_at"]]
    m = inside[["user_id", "snapshot_at"]].merge(orders, on="user_id")
    hit = (m.ordered_at >= m.snapshot_at) & (
        m.ordered_at < m.snapshot_at + pd.Timedelta(days=horizon)
    )
    bought = m[hit].groupby(["user_id", "snapshot_at"]).size().rename("n")
    inside = inside.join(bought, on=["user_id", "snapshot_at"])
    inside["y"] = inside.n.notna()
    prob = inside[f"p_{horizon}d"]
    # Overall and within each decile of the oracle, observed frequency matches the oracle.
    se = np.sqrt((prob * (1 - prob)).sum()) / len(inside)
    assert abs(inside.y.mean() - prob.mean()) < 4 * se + 1e-3
    inside["bin"] = pd.qcut(prob, 10, duplicates="drop")
    g = inside.groupby("bin", observed=True).agg(
        p=(prob.name, "mean"), y=("y", "mean"), n=("y", "size")
    )
    tol = 4 * np.sqrt(g.p * (1 - g.p) / g.n) + 0.01
    assert ((g.y - g.p).abs() <= tol).all(), g
    # And it separates: the oracle is worth scoring against.
    assert g.y.iloc[-1] - g.y.iloc[0] > 0.3


def test_consent_withdrawals_come_after_signup_and_leave_buying_alone(frames):
    c = frames["consents"]
    signup = frames["users"].set_index("user_id").signup_at
    assert (c.changed_at.to_numpy() >= signup.loc[c.user_id].to_numpy()).all()
    assert c.changed_at.max() < END and set(c.purpose) == {"profiling", "contact"}
    first = c.sort_values("changed_at").groupby(["purpose", "user_id"]).granted.first()
    assert not first.any()  # a shopper's first change is always a withdrawal
    shares = first.groupby("purpose").size() / len(frames["users"])
    assert 0.02 < shares["profiling"] < 0.06 and 0.04 < shares["contact"] < 0.08
    first = first.droplevel("purpose")
    # Consent is drawn from a stream of its own: withdrawers order like everyone else.
    per_user = frames["orders"].groupby("user_id").size().reindex(signup.index, fill_value=0)
    out = per_user.index.isin(first.index)
    assert abs(per_user[out].mean() - per_user[~out].mean()) < 0.25 * per_user.mean()


def test_no_visit_before_an_order_crosses_midnight(frames):
    """An order's own session and cart adds fall on its own day: one dated the evening before
    would let a snapshot at midnight see an order it cannot know of."""
    orders = frames["orders"]
    early = orders.ordered_at - orders.ordered_at.dt.floor("D") < pd.Timedelta(minutes=25)
    assert early.sum() > 10  # orders just after midnight exist, so the check has cases
    # Browsing starts at 23:40 at the latest, so a session after that could only be a visit
    # for an order after midnight.
    t = frames["sessions"].started_at
    assert not (t - t.dt.floor("D") > pd.Timedelta(hours=23, minutes=40)).any()
    # The cart lines an order checked out were added on the order's day.
    cart = frames["cart_events"]
    bought = cart[cart.action == "purchase"][["user_id", "sku", "ts"]]
    added = cart[cart.action == "add"][["user_id", "sku", "ts"]]
    pairs = bought.merge(added, on=["user_id", "sku"], suffixes=("", "_add"))
    gap = pairs.ts - pairs.ts_add
    pairs = pairs[(gap > pd.Timedelta(0)) & (gap <= pd.Timedelta(seconds=110))]
    assert len(pairs) > 100
    assert (pairs.ts.dt.floor("D") == pairs.ts_add.dt.floor("D")).all()


def test_the_catalogue_does_not_carry_the_true_cycles(small_world):
    assert not [c for c in small_world["products"].column_names if "cycle" in c]
    assert {"mean_days", "std_days"} <= set(small_world["truth_cycles"].column_names)


def test_households_share_an_address_and_a_move_makes_a_new_one(frames):
    users = frames["users"]
    size = users.groupby("household_id").user_id.transform("size")
    assert 0.10 <= (size > 1).mean() <= 0.20  # shoppers living with another shopper
    homes = users.groupby("household_id")
    for col in ("address_id", "city", "lat", "lon"):
        assert (homes[col].nunique() == 1).all(), col
    assert users.address_id.nunique() == users.household_id.nunique()
    moves = frames["address_changes"]
    assert len(moves) > 50
    assert moves.address_id.is_unique
    assert not moves.address_id.isin(users.address_id).any()


def test_parcels_leave_in_dispatch_waves_within_capacity(frames):
    waves = frames["dispatch_waves"]
    assert waves.groupby("node_id").size().between(2, 3).all()
    s = frames["shipments"].dropna(subset=["wave_at"])
    s = s.merge(frames["orders"][["order_id", "ordered_at"]], on="order_id")
    minute = s.wave_at.dt.hour * 60 + s.wave_at.dt.minute
    s = s.assign(minute=minute).merge(
        waves, left_on=["node_id", "minute"], right_on=["node_id", "cutoff_minute"]
    )
    # Every parcel left with one of its node's waves, after it was ordered, and the carrier
    # collected it after the cut-off.
    assert len(s) == frames["shipments"].wave_at.notna().sum()
    assert (s.wave_at > s.ordered_at).all()
    assert (s.shipped_at.isna() | (s.shipped_at > s.wave_at)).all()
    # No batch holds more than its wave's capacity, and some wave was full: a backlog waited.
    batch = s.groupby(["node_id", "wave_at"]).agg(
        n=("shipment_id", "size"), cap=("capacity", "first")
    )
    assert (batch.n <= batch.cap).all()
    assert (batch.n == batch.cap).any()


def test_a_full_wave_pushes_later_parcels_to_the_next_one_in_order_of_arrival():
    from cadence.world._dispatch import HOUR_US, Dispatch

    # One regional warehouse (waves at 9, 15 and 22 h) with room for 2 parcels a wave.
    d = Dispatch(np.array([0]), np.array([6]), start_us=0)
    node = np.zeros(5, dtype=np.int64)
    t = np.array([1, 2, 3, 4, 9]) * HOUR_US  # four before 8:00 (the 9:00 wave's lead), one after
    wave = d.assign(0, node, t)
    assert wave.tolist() == [0, 0, 1, 1, 2]
    # The next day's early parcels queue behind nothing; yesterday's left with yesterday's waves.
    wave = d.assign(1, node[:3], 24 * HOUR_US + np.array([1, 2, 3]) * HOUR_US)
    assert wave.tolist() == [3, 3, 4]
    assert (d.cutoff_us(node[:2], np.array([3, 4])) == (24 + np.array([9, 15])) * HOUR_US).all()


def test_the_summary_counts_dispatch_batches_per_warehouse_day(small_world):
    from cadence.world import summarise

    figures = summarise(small_world, {})
    s = small_world["shipments"].to_pandas().dropna(subset=["wave_at"])
    nodes = small_world["nodes"].to_pandas()
    s = s[s.node_id.isin(nodes[nodes.kind != "store"].node_id)]
    batches = s.groupby(["node_id", "wave_at"]).size()
    days = s.assign(day=s.wave_at.dt.floor("D")).groupby(["node_id", "day"]).size()
    assert figures["warehouse_batches_per_day"] == round(len(batches) / len(days), 2)
    assert figures["parcels_per_batch"] == round(len(s) / len(batches), 2)
    assert 1 <= figures["warehouse_batches_per_day"] <= 3


def test_a_world_is_reused_only_with_the_same_settings_and_code(tmp_path):
    import json

    from cadence.flows.steps.world import generate, generator, unchanged

    cfg = dataclasses.replace(SMALL, users=60, days=12)
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    generate(cfg, raw, truth)
    assert unchanged(raw, truth, cfg)
    assert not unchanged(raw, truth, dataclasses.replace(cfg, seed=cfg.seed + 1))
    # A world written by other simulator code (an older Cadence) is not this world.
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["generator"] == generator()
    manifest["generator"] = "0" * 32
    (raw / "manifest.json").write_text(json.dumps(manifest))
    assert not unchanged(raw, truth, cfg)
