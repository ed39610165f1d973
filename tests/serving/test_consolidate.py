"""The consolidation stage: the tariff learned from history, and the day's merge plan.

Direction: orders of one address at one node become one parcel and fewer batches; other
addresses and the shop's own orders stay apart; a parcel joins a batch that already leaves;
a higher CO2 price buys less CO2. Invariance: every order ships exactly once, within the limits,
the promises and the capacity; merging never costs more; the rows' order changes nothing.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pandas as pd
import pytest

from cadence.serving._consolidate import ORDER_COLUMNS, PackRules, Plan, consolidate
from cadence.serving._tariff import Tariff, fit_tariff, fit_transit

pytestmark = pytest.mark.unit

ZONES = ("same_city", "same_province", "cross_region", "remote")
CARRIERS = ("swift", "national", "budget", "metro")
KINDS = ("regional_warehouse", "forward_warehouse", "store")
FIRST, NEXT = np.array([5.0, 7.0, 10.0, 16.0]), np.array([1.0, 2.0, 4.0, 8.0])
CARRIER_PRICE, PICK = np.array([1.4, 1.0, 0.8, 0.7]), np.array([0.8, 1.0, 2.0])


def _true_cost(zone, carrier, kind, billed):
    """The price list the tests' histories are made with."""
    extra = np.ceil(np.maximum(billed - 1, 0) - 1e-9)
    return np.round((FIRST[zone] + NEXT[zone] * extra) * CARRIER_PRICE[carrier] + PICK[kind], 2)


def _tariff() -> Tariff:
    pairs = list(itertools.product(range(4), range(4)))
    return Tariff(
        divisor=6000.0,
        first={(ZONES[z], CARRIERS[c]): FIRST[z] * CARRIER_PRICE[c] + PICK[0] for z, c in pairs},
        next_kg={(ZONES[z], CARRIERS[c]): NEXT[z] * CARRIER_PRICE[c] for z, c in pairs},
        pick={k: PICK[i] - PICK[0] for i, k in enumerate(KINDS)},
    )


def _history(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    zone, carrier, node = rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 6, n)
    kind = node % 3
    actual = rng.gamma(1.5, 3.0, n).round(3)
    volume = rng.gamma(1.5, 15000.0, n).round(0)
    billed = np.maximum(actual, volume / 6000.0)
    shipments = pd.DataFrame(
        {
            "shipment_id": np.arange(n),
            "node_id": [f"N{i}" for i in node],
            "zone": np.array(ZONES)[zone],
            "carrier": np.array(CARRIERS)[carrier],
            "actual_weight_kg": actual,
            "volume_cm3": volume,
            "billed_weight_kg": billed,
            "cost": _true_cost(zone, carrier, kind, billed),
        }
    )
    nodes = pd.DataFrame(
        {"node_id": [f"N{i}" for i in range(6)], "kind": np.array(KINDS)[np.arange(6) % 3]}
    )
    return shipments, nodes


def test_the_fitted_tariff_reproduces_the_historys_costs():
    shipments, nodes = _history()
    tariff = fit_tariff(shipments, nodes)
    assert tariff.divisor == pytest.approx(6000.0)
    kind = shipments.node_id.map(nodes.set_index("node_id").kind)
    cost = tariff.cost(shipments.zone, shipments.carrier, kind, shipments.billed_weight_kg)
    assert np.abs(cost - shipments.cost).max() <= 0.01 + 1e-9
    # The cheapest kind's picking is pinned at 0; the others are what they cost above it.
    assert tariff.pick["regional_warehouse"] == 0.0
    assert tariff.pick["store"] == pytest.approx(PICK[2] - PICK[0], abs=0.01)
    billed = tariff.billed(np.array([2.0, 1.0]), np.array([6000.0, 12000.0]))
    assert billed.tolist() == [2.0, 2.0]


def test_a_pair_without_history_is_estimated_and_an_unknown_carrier_fails_when_priced():
    shipments, nodes = _history()
    shipments = shipments[~((shipments.zone == "remote") & (shipments.carrier == "budget"))]
    tariff = fit_tariff(shipments, nodes)
    assert tariff.cost(["remote"], ["swift"], ["store"], [1.0]).tolist() == [
        round(16.0 * 1.4 + 2.0, 2)
    ]
    # Never seen: estimated from the zone's and the carrier's prices elsewhere.
    truth = (16.0 + 8.0 * 2) * 0.8 + 2.0
    estimate = tariff.cost(["remote"], ["budget"], ["store"], [3.0])[0]
    assert estimate == pytest.approx(truth, rel=0.1)
    with pytest.raises(ValueError, match="'remote' with carrier 'drone'"):
        tariff.cost(["remote"], ["drone"], ["store"], [1.0])
    with pytest.raises(ValueError, match="node kind 'depot'"):
        tariff.cost(["remote"], ["swift"], ["depot"], [1.0])


def test_missing_history_columns_are_named():
    shipments, nodes = _history(50)
    with pytest.raises(ValueError, match="shipments has no column 'billed_weight_kg'"):
        fit_tariff(shipments.drop(columns="billed_weight_kg"), nodes)
    with pytest.raises(ValueError, match="nodes has no column 'kind'"):
        fit_tariff(shipments, nodes.drop(columns="kind"))


def test_transit_is_the_90th_percentile_of_delivered_parcels():
    shipped = pd.Timestamp("2025-01-01", tz="UTC")
    days = np.arange(1, 11)
    frame = pd.DataFrame(
        {
            "zone": ["same_city"] * 12,
            "carrier": ["metro"] * 12,
            "shipped_at": [shipped] * 12,
            # Two parcels still in transit: no delivery yet, left out.
            "delivered_at": [shipped + pd.Timedelta(days=int(d)) for d in days] + [pd.NaT] * 2,
        }
    )
    assert fit_transit(frame) == {("same_city", "metro"): pytest.approx(9.1)}


# The day's orders: defaults for one store in one city, overridden per order.
DEFAULT = {
    "user_id": "u1",
    "address_id": "a1",
    "area": "c1",
    "node_id": "n1",
    "node_kind": "store",
    "zone": "same_city",
    "carrier": "metro",
    "distance_km": 8.0,
    "weight_kg": 1.0,
    "volume_cm3": 2000.0,
    "ready_minute": 300,
    "deadline_minute": np.nan,
    "mergeable": True,
}


def _orders(*rows: dict) -> pd.DataFrame:
    frame = pd.DataFrame([{**DEFAULT, **row} for row in rows])
    frame.insert(0, "order_id", np.arange(1, len(rows) + 1, dtype=np.int64))
    return frame


def _waves(cutoffs=(660, 1260), capacity=100, cost=10.0, node="n1") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "node_id": node,
            "wave": np.arange(1, len(cutoffs) + 1),
            "cutoff_minute": list(cutoffs),
            "capacity": capacity,
            "batch_cost": cost,
        }
    )


def _wave_of(plan: Plan, order_id: int) -> tuple[int, int]:
    pid = plan.assignments.set_index("order_id").parcel_id[order_id]
    row = plan.parcels.set_index("parcel_id").loc[pid]
    return int(row.wave), int(row.day_offset)


def test_two_orders_of_one_address_become_one_parcel_and_fewer_batches():
    # The first order could leave with wave 1; the second is ready only for wave 2.
    orders = _orders({"ready_minute": 300}, {"ready_minute": 900, "weight_kg": 2.5})
    plan = consolidate(orders, _waves(), _tariff())
    assert len(plan.parcels) == 1 and plan.parcels.merged.all()
    assert plan.parcels.n_orders.tolist() == [2] and plan.parcels.wave.tolist() == [2]
    merged, baseline = plan.summary["merged"], plan.summary["baseline"]
    assert (merged["parcels"], merged["batches"]) == (1, 1)
    assert (baseline["parcels"], baseline["batches"]) == (2, 2)
    assert merged["cost_per_order"] < baseline["cost_per_order"]
    assert merged["co2_per_order"] < baseline["co2_per_order"]
    assert plan.released.empty


def test_orders_to_different_addresses_stay_apart():
    orders = _orders({"address_id": "a1"}, {"address_id": "a2"})
    plan = consolidate(orders, _waves(), _tariff())
    assert plan.parcels.n_orders.tolist() == [1, 1]
    assert not plan.parcels.merged.any()


def test_a_normal_order_is_never_merged_nor_delayed_and_its_batch_is_joined():
    # The shop's order is ready for wave 2 only; the mergeable one could leave earlier, but
    # joins the batch the shop's order opens rather than open one of its own.
    orders = _orders(
        {"ready_minute": 900, "mergeable": False}, {"ready_minute": 300, "mergeable": True}
    )
    plan = consolidate(orders, _waves(), _tariff())
    assert len(plan.parcels) == 2 and not plan.parcels.merged.any()
    assert _wave_of(plan, 1) == (2, 0)  # as the shop ships it, in the baseline too
    assert plan.baseline_parcels.wave.tolist() == [2, 1]
    assert _wave_of(plan, 2) == (2, 0)
    assert plan.summary["merged"]["batches"] == 1
    assert plan.summary["baseline"]["batches"] == 2


def _cheapest_split(weights: list[float], volumes: list[float], rules: PackRules) -> float:
    """The cheapest way to split one address's orders into parcels, by brute force (same
    city, metro, a store)."""
    items = range(len(weights))
    best = np.inf
    for labels in itertools.product(items, repeat=len(weights)):
        bins = [[i for i in items if labels[i] == b] for b in set(labels)]
        w = np.array([sum(weights[i] for i in b) for b in bins])
        v = np.array([sum(volumes[i] for i in b) for b in bins])
        if (w <= rules.max_weight_kg).all() and (v <= rules.max_volume_cm3).all():
            best = min(best, _true_cost(0, 3, 2, np.maximum(w, v / 6000.0)).sum())
    return best


def test_an_address_past_the_limits_is_packed_into_the_cheapest_parcels():
    # Two dense orders and two bulky ones: the dense ones fit one parcel by weight and the
    # bulky ones would fill another by volume, but a dense order with a bulky one each bills
    # 15 kg instead of 29 + 14.
    weights = [14.0, 14.0, 1.0, 1.0, 0.4]
    volumes = [1000.0, 1000.0, 84000.0, 84000.0, 500.0]
    rules = PackRules()
    orders = _orders(
        *({"weight_kg": w, "volume_cm3": v} for w, v in zip(weights, volumes, strict=True))
    )
    plan = consolidate(orders, _waves(), _tariff(), rules)
    assert len(plan.parcels) == 2
    assert sorted(plan.parcels.billed_kg.round(6)) == [15.0, 15.4]
    assert (plan.parcels.weight_kg <= rules.max_weight_kg).all()
    assert (plan.parcels.volume_cm3 <= rules.max_volume_cm3).all()
    assert plan.parcels.cost.sum() == pytest.approx(_cheapest_split(weights, volumes, rules))


def test_a_large_group_is_packed_by_the_heuristic_as_well():
    # Eight orders (past the exact search): four dense, four bulky; one of each per parcel.
    orders = _orders(
        *({"weight_kg": 14.0, "volume_cm3": 1000.0} for _ in range(4)),
        *({"weight_kg": 1.0, "volume_cm3": 84000.0} for _ in range(4)),
    )
    plan = consolidate(orders, _waves(), _tariff())
    assert plan.parcels.billed_kg.round(6).tolist() == [15.0] * 4
    assert plan.parcels.n_orders.tolist() == [2] * 4


def test_an_order_over_the_limits_ships_alone_flagged_oversize():
    orders = _orders({"weight_kg": 35.0}, {"weight_kg": 1.0}, {"weight_kg": 2.0})
    plan = consolidate(orders, _waves(), _tariff())
    parcels = plan.parcels.sort_values("weight_kg")
    assert parcels.n_orders.tolist() == [2, 1]
    assert parcels.oversize.tolist() == [False, True]


def test_the_tightest_promise_leaves_the_merge_when_no_wave_keeps_them_all():
    # Order 1 must leave with wave 1 (cut-off 660); order 2 is ready only for wave 2.
    orders = _orders({"ready_minute": 300, "deadline_minute": 660.0}, {"ready_minute": 900})
    plan = consolidate(orders, _waves(), _tariff())
    assert plan.released.to_dict("records") == [{"order_id": 1, "reason": "promise_missed"}]
    assert _wave_of(plan, 1) == (1, 0) and _wave_of(plan, 2) == (2, 0)
    assert plan.parcels.n_orders.tolist() == [1, 1]


def test_a_full_wave_sends_the_parcel_to_the_next_one_or_out_of_the_merge():
    # Capacity 1: the shop's order takes wave 1, so the other address's parcel takes wave 2.
    orders = _orders({"mergeable": False}, {"address_id": "a2"})
    plan = consolidate(orders, _waves(capacity=1), _tariff())
    assert _wave_of(plan, 1) == (1, 0) and _wave_of(plan, 2) == (2, 0)
    assert plan.released.empty
    # With both of the day's waves taken, a parcel due today has no room: it ships alone.
    orders = _orders(
        {"mergeable": False},
        {"mergeable": False, "address_id": "a2"},
        {"address_id": "a3", "deadline_minute": 1260.0},
    )
    plan = consolidate(orders, _waves(capacity=1), _tariff())
    assert plan.released.to_dict("records") == [{"order_id": 3, "reason": "no_capacity"}]
    assert _wave_of(plan, 3) == (1, 1)


def test_an_order_reaching_no_wave_today_leaves_with_the_next_days_first():
    orders = _orders({"ready_minute": 1250})
    plan = consolidate(orders, _waves(cutoffs=(1260, 660)), _tariff())
    assert _wave_of(plan, 1) == (2, 1)  # wave 2 is the earlier cut-off here
    assert plan.batches[["wave", "day_offset", "parcels"]].values.tolist() == [[2, 1, 1]]


def test_a_higher_co2_price_opens_one_dear_batch_instead_of_two_cheap_ones():
    # Order 1 can leave with wave 1 or 2, order 2 with wave 2 or 3; wave 2's batch costs most.
    waves = _waves(cutoffs=(600, 900, 1200)).assign(batch_cost=[10.0, 100.0, 10.0])
    orders = _orders(
        {"address_id": "a1", "deadline_minute": 900.0}, {"address_id": "a2", "ready_minute": 700}
    )
    cheap = consolidate(orders, waves, _tariff(), PackRules(co2_price=0.0))
    green = consolidate(orders, waves, _tariff(), PackRules(co2_price=100.0))
    assert sorted(cheap.parcels.wave) == [1, 3] and sorted(green.parcels.wave) == [2, 2]
    assert green.summary["merged"]["co2_per_order"] < cheap.summary["merged"]["co2_per_order"]
    assert green.summary["merged"]["cost_per_order"] > cheap.summary["merged"]["cost_per_order"]


def _leaves_at(parcels: pd.DataFrame, waves: pd.DataFrame) -> pd.Series:
    """Each parcel's wave's cut-off, in minutes after the plan's midnight."""
    cutoff = waves.set_index(["node_id", "wave"]).cutoff_minute
    at = cutoff.reindex(pd.MultiIndex.from_frame(parcels[["node_id", "wave"]])).to_numpy()
    return pd.Series(at + 1440 * parcels.day_offset.to_numpy(), index=parcels.index)


def _random_day(seed: int, tight: bool, promises: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A few nodes and addresses, heavy and bulky orders, (`promises`) deadlines, and
    (`tight`) waves of little capacity."""
    rng = np.random.default_rng(seed)
    n, n_nodes, n_addresses = (
        int(rng.integers(1, 40)),
        int(rng.integers(1, 4)),
        int(rng.integers(1, 8)),
    )
    node, address = rng.integers(0, n_nodes, n), rng.integers(0, n_addresses, n)
    zone = (address + node) % 4
    ready = rng.integers(0, 1440, n)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(100, 100 + n, dtype=np.int64),
            "user_id": [f"u{a}" for a in address],
            "address_id": [f"a{a}" for a in address],
            "area": [f"c{a % 3}" for a in address],
            "node_id": [f"n{k}" for k in node],
            "node_kind": np.array(KINDS)[node % 3],
            "zone": np.array(ZONES)[zone],
            "carrier": np.array(CARRIERS)[
                rng.integers(1, 4, n) if rng.random() < 0.5 else np.full(n, 3)
            ],
            "distance_km": np.array([10.0, 100.0, 800.0, 2000.0])[zone],
            "weight_kg": rng.gamma(1.5, 4.0, n).round(3),
            "volume_cm3": rng.gamma(1.5, 20000.0, n).round(0),
            "ready_minute": ready,
            "deadline_minute": np.where(
                promises & (rng.random(n) < 0.5), ready + rng.integers(-100, 2000, n), np.nan
            ),
            "mergeable": rng.random(n) < 0.7,
        }
    )
    rows = []
    for k in range(n_nodes):
        cutoffs = np.sort(rng.choice(np.arange(6, 23), int(rng.integers(1, 4)), replace=False))
        for w, hour in enumerate(cutoffs, start=1):
            capacity = int(rng.integers(1, 6)) if tight else 1000
            rows.append((f"n{k}", w, int(hour) * 60, capacity, float(rng.choice([10, 25, 40]))))
    return orders, pd.DataFrame(
        rows, columns=["node_id", "wave", "cutoff_minute", "capacity", "batch_cost"]
    )


RULES = PackRules()
SEEDS = range(40)


@functools.cache
def _random_plan(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, Plan, pd.DataFrame]:
    """A random day (odd seeds: little capacity), its plan, and each order's row of the
    assignments with its parcel's columns, `mergeable` and `deadline_minute`."""
    orders, waves = _random_day(seed, tight=seed % 2 == 1)
    plan = consolidate(orders, waves, _tariff(), RULES)
    rows = plan.assignments.merge(orders[["order_id", "mergeable", "deadline_minute"]])
    rows = rows.join(plan.parcels.set_index("parcel_id"), on="parcel_id")
    return orders, waves, plan, rows


@pytest.mark.parametrize("seed", SEEDS)
def test_every_order_ships_in_exactly_one_parcel(seed):
    orders, _, plan, rows = _random_plan(seed)
    assert sorted(plan.assignments.order_id) == sorted(orders.order_id)
    counts = rows.parcel_id.value_counts().sort_index()
    assert counts.tolist() == plan.parcels.n_orders.tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_only_mergeable_orders_share_a_parcel_and_released_ones_ship_alone(seed):
    _, _, plan, rows = _random_plan(seed)
    assert rows[rows.n_orders > 1].mergeable.all()
    assert (rows[rows.order_id.isin(plan.released.order_id)].n_orders == 1).all()
    assert not rows[rows.order_id.isin(plan.released.order_id)].from_merge.any()


@pytest.mark.parametrize("seed", SEEDS)
def test_no_parcel_of_several_orders_is_over_the_limits(seed):
    _, _, plan, _ = _random_plan(seed)
    p = plan.parcels
    over = (p.weight_kg > RULES.max_weight_kg) | (p.volume_cm3 > RULES.max_volume_cm3)
    assert not (over & (p.n_orders > 1)).any()
    assert (p.oversize == over).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_merges_parcels_fit_the_room_the_shops_own_parcels_leave(seed):
    # The shop's parcels take their waves first; parcels released for want of room come after,
    # as the shop would ship them, and may overfill a wave.
    _, waves, plan, rows = _random_plan(seed)
    late = plan.released.order_id[plan.released.reason == "no_capacity"]
    first = rows[~rows.order_id.isin(late)].drop_duplicates("parcel_id")
    used = first.groupby(["node_id", "wave", "day_offset"]).from_merge.agg(["sum", "size"])
    capacity = waves.set_index(["node_id", "wave"]).capacity
    room = capacity.reindex(used.index.droplevel("day_offset")).to_numpy()
    assert ((used["sum"] == 0) | (used["size"] <= room)).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_merges_parcels_keep_every_promise_in_them(seed):
    _, waves, _, rows = _random_plan(seed)
    merged = rows[rows.from_merge]
    assert (_leaves_at(merged, waves) <= merged.deadline_minute.fillna(np.inf)).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_shops_own_orders_never_leave_later_than_without_the_merge(seed):
    orders, waves, plan, rows = _random_plan(seed)
    normal = ~orders.mergeable.to_numpy()
    when = _leaves_at(rows, waves).set_axis(rows.order_id)[orders.order_id[normal]]
    # The baseline's parcels are the orders, in the orders' row order.
    unmerged = _leaves_at(plan.baseline_parcels, waves)[normal]
    assert (when.to_numpy() <= unmerged.to_numpy()).all()


def test_merging_never_costs_more_when_nothing_is_released():
    # Days without promises, half of them with little capacity: the days where nothing had to
    # be released (all with room, some without) are compared.
    compared = 0
    for seed in range(120):
        orders, waves = _random_day(2000 + seed, tight=seed % 2 == 1, promises=False)
        plan = consolidate(orders, waves, _tariff(), RULES)
        if not plan.released.empty:
            assert seed % 2 == 1, "with room everywhere and no promise, nothing is released"
            continue
        compared += 1
        merged, baseline = plan.summary["merged"], plan.summary["baseline"]
        assert merged["cost_per_order"] <= baseline["cost_per_order"] + 1e-9, seed
        assert merged["co2_per_order"] <= baseline["co2_per_order"] + 1e-9, seed
        assert merged["batches"] <= baseline["batches"], seed
    assert compared >= 75


@pytest.mark.parametrize("seed", range(25))
def test_raising_the_co2_price_never_raises_the_plans_co2(seed):
    orders, waves = _random_day(1000 + seed, tight=False)
    co2 = [
        consolidate(orders, waves, _tariff(), PackRules(co2_price=price)).summary["merged"][
            "co2_per_order"
        ]
        for price in (0.0, 0.05, 0.5, 5.0, 50.0)
    ]
    assert all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(co2))


def test_the_rows_order_changes_nothing_and_the_inputs_are_left_alone():
    orders, waves = _random_day(7, tight=True)
    before = orders.copy(), waves.copy()
    plan = consolidate(orders, waves, _tariff())
    pd.testing.assert_frame_equal(orders, before[0])
    pd.testing.assert_frame_equal(waves, before[1])
    shuffled = consolidate(orders.sample(frac=1.0, random_state=3), waves.iloc[::-1], _tariff())
    for side in ("merged", "baseline"):
        assert shuffled.summary[side] == pytest.approx(plan.summary[side])
    assert sorted(shuffled.released.order_id) == sorted(plan.released.order_id)


def test_an_empty_day_gives_an_empty_plan():
    orders = pd.DataFrame({c: pd.Series(dtype=_orders({}).dtypes[c]) for c in ORDER_COLUMNS})
    plan = consolidate(orders, _waves().iloc[:0], _tariff())
    assert plan.parcels.empty and plan.batches.empty and plan.assignments.empty
    assert plan.released.empty
    zeros = dict.fromkeys(
        ("orders", "parcels", "batches", "batches_per_node_day", "cost_per_order", "co2_per_order"),
        0,
    )
    assert plan.summary == {"merged": zeros, "baseline": zeros}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o, w: (o.drop(columns="volume_cm3"), w), "orders has no column 'volume_cm3'"),
        (lambda o, w: (o, w.drop(columns="capacity")), "waves has no column 'capacity'"),
        (lambda o, w: (o.assign(node_id=["n1", "n2"]), w), "node 'n2' has no dispatch waves"),
        (lambda o, w: (o.assign(zone=["same_city", "orbit"]), w), "zone 'orbit'"),
        (lambda o, w: (o.assign(carrier=["metro", "pigeon"]), w), "carrier 'pigeon'"),
        (lambda o, w: (o.assign(weight_kg=[1.0, np.nan]), w), "'weight_kg' has missing values"),
    ],
)
def test_bad_input_is_named(change, message):
    orders, waves = change(_orders({}, {}), _waves())
    with pytest.raises(ValueError, match=message):
        consolidate(orders, waves, _tariff())
