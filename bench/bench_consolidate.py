"""Benchmark: the merge service's consolidation stage against its speed target (a day of
100,000 orders, about 60% mergeable, over ~20 nodes and ~40,000 addresses, in well under 30 s
on 2 cores).

Builds a synthetic day with seeded numpy: nodes of the world's three kinds with their dispatch
waves and batch costs, addresses in cities and provinces (zones follow), orders of the world's
categories (weights and volumes as world/_params.py draws them), ready times over the day and
delivery-promise deadlines; the tariff is built directly with the world's prices (nothing is
fitted). Times `consolidate` once, checks the plan's invariants, and prints the plan beside its
baseline, the same orders shipped unmerged: each its own parcel in the earliest wave with room,
priced by the same tariff and CO2 model.

    python bench/bench_consolidate.py                   # 100,000 orders
    python bench/bench_consolidate.py --orders 20000 --co2-price 0.1
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from cadence.ingest._tables import NODE_KINDS, ZONES
from cadence.serving._consolidate import PackRules, Plan, consolidate
from cadence.serving._tariff import Tariff
from cadence.world import _params as P


def world_tariff() -> Tariff:
    """The world's price list as a Tariff (the service would fit it from shipments)."""
    pairs = [(z, c) for z in range(len(ZONES)) for c in range(len(P.CARRIERS))]
    cheapest = float(P.PICK_COST.min())
    return Tariff(
        divisor=P.VOLUMETRIC_DIVISOR,
        first={
            (ZONES[z], P.CARRIERS[c]): P.TARIFF_FIRST_KG[z] * P.CARRIER_PRICE[c] + cheapest
            for z, c in pairs
        },
        next_kg={
            (ZONES[z], P.CARRIERS[c]): P.TARIFF_NEXT_KG[z] * P.CARRIER_PRICE[c] for z, c in pairs
        },
        pick={k: float(P.PICK_COST[i]) - cheapest for i, k in enumerate(NODE_KINDS)},
    )


def synthetic_day(
    n_orders: int, seed: int = 0, n_nodes: int = 20, n_addresses: int = 40_000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day's orders and the nodes' waves."""
    rng = np.random.default_rng(seed)
    # Cities in provinces of five, the last two provinces remote.
    n_cities = 60
    province, remote = np.arange(n_cities) // 5, np.arange(n_cities) >= 50
    kind = np.r_[np.zeros(4, int), np.ones(8, int), np.full(n_nodes - 12, 2)]
    node_city = rng.choice(n_cities, n_nodes, replace=False)
    node_ids = np.array([f"N{i:03d}" for i in range(n_nodes)])

    # Each address is served by one node most of the time (by stock, sometimes another), most
    # often one in its own city or province.
    a_node = rng.integers(0, n_nodes, n_addresses)
    near = rng.random(n_addresses)
    a_city = np.where(
        near < 0.45,
        node_city[a_node],
        np.where(
            near < 0.75,
            province[node_city[a_node]] * 5 + rng.integers(0, 5, n_addresses),
            rng.integers(0, n_cities, n_addresses),
        ),
    )
    address = rng.integers(0, n_addresses, n_orders)
    node = np.where(
        rng.random(n_orders) < 0.85, a_node[address], rng.integers(0, n_nodes, n_orders)
    )
    dest = a_city[address]
    same_city = node_city[node] == dest
    same_prov = province[node_city[node]] == province[dest]
    zone = np.where(same_city, 0, np.where(same_prov, 1, np.where(remote[dest], 3, 2)))
    # One distance per node and address (a jitter drawn per address, scaled by node).
    jitter = rng.lognormal(0, 0.4, n_addresses)[address] * (1 + node / (4 * n_nodes))
    distance = np.array([10.0, 120.0, 800.0, 2000.0])[zone] * jitter
    # The routing's carrier for a node and address, or swift for an express order.
    default = np.where(zone <= 1, 3, (a_node[address] + node) % 3)
    carrier = np.where(rng.random(n_orders) < 0.1, 0, default)

    # Baskets of the world's categories: 1 + Poisson lines, 1 or 2 units each.
    lines = 1 + rng.poisson(P.ADDON_LINES, n_orders)
    line_order = np.repeat(np.arange(n_orders), lines)
    cat = rng.integers(0, P.N_CAT, line_order.size)
    qty = 1 + (rng.random(line_order.size) < P.ADDON_QTY[1])
    jitter = rng.lognormal(0, 0.25, line_order.size)
    weight = np.bincount(line_order, P.WEIGHT[cat] * qty * jitter, n_orders).round(3)
    volume = np.bincount(line_order, P.VOLUME[cat] * qty * jitter, n_orders).round(0)

    # Orders come in through the day, most in the evening; picking can start 30 min later.
    ordered = np.clip(rng.normal(19 * 60, 240, n_orders), 0, 1380)
    ready = (ordered + 30).astype(np.int64)
    # The latest cut-off keeping the promise: from the first wave the order reaches, some
    # hours or a day later; 3% are late already, 30% have no promise to keep.
    cutoffs = np.full((3, 4), np.inf)
    for k, hours in enumerate(P.WAVE_CUTOFFS):
        cutoffs[k, : len(hours)] = np.array(hours) * 60
    nxt = cutoffs[kind[node]]
    earliest = np.where(nxt - 60 >= ready[:, None], nxt, np.inf).min(axis=1)
    earliest = np.where(np.isfinite(earliest), earliest, nxt[:, 0] + 1440)
    deadline = earliest + rng.gamma(1.5, 500.0, n_orders)
    deadline = np.where(rng.random(n_orders) < 0.03, earliest - 1, deadline)
    deadline = np.where(rng.random(n_orders) < 0.3, np.nan, deadline)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, n_orders + 1, dtype=np.int64),
            "user_id": [f"U{a:06d}" for a in address],
            "address_id": [f"A{a:06d}" for a in address],
            "area": [f"C{c:02d}" for c in dest],
            "node_id": node_ids[node],
            "node_kind": np.array(NODE_KINDS)[kind[node]],
            "zone": np.array(ZONES)[zone],
            "carrier": np.array(P.CARRIERS)[carrier],
            "distance_km": distance.round(3),
            "weight_kg": weight,
            "volume_cm3": volume,
            "ready_minute": ready,
            "deadline_minute": deadline,
            "mergeable": rng.random(n_orders) < 0.6,
        }
    )
    # Waves as the world sets them: each node's daily capacity shared evenly, here 1.4 times its
    # expected load.
    load = np.bincount(node, minlength=n_nodes)
    rows = []
    for i in range(n_nodes):
        hours = P.WAVE_CUTOFFS[kind[i]]
        for w, hour in enumerate(hours, start=1):
            cap = int(np.ceil(1.4 * load[i] / len(hours)))
            rows.append((node_ids[i], w, hour * 60, cap, float(P.BATCH_COST[kind[i]])))
    waves = pd.DataFrame(
        rows, columns=["node_id", "wave", "cutoff_minute", "capacity", "batch_cost"]
    )
    return orders, waves


def invariants(
    plan: Plan, orders: pd.DataFrame, waves: pd.DataFrame, rules: PackRules
) -> list[str]:
    """The plan's broken invariants (none: an empty list)."""
    broken = []
    rows = plan.assignments.merge(orders[["order_id", "mergeable", "deadline_minute"]])
    rows = rows.join(plan.parcels.set_index("parcel_id"), on="parcel_id")
    if sorted(rows.order_id) != sorted(orders.order_id):
        broken.append("an order is not in exactly one parcel")
    over = (rows.weight_kg > rules.max_weight_kg) | (rows.volume_cm3 > rules.max_volume_cm3)
    if (over & (rows.n_orders > 1)).any():
        broken.append("a parcel of several orders is over the size limits")
    if not rows[rows.n_orders > 1].mergeable.all():
        broken.append("a parcel of several orders holds a normal order")
    if (rows[rows.order_id.isin(plan.released.order_id)].n_orders != 1).any():
        broken.append("a released order does not ship alone")
    # The shop's parcels are placed first; those released for want of room come after.
    late = plan.released.order_id[plan.released.reason == "no_capacity"]
    first = rows[~rows.order_id.isin(late)].drop_duplicates("parcel_id")
    used = first.groupby(["node_id", "wave", "day_offset"]).from_merge.agg(["sum", "size"])
    waves = waves.set_index(["node_id", "wave"])
    room = waves.capacity.reindex(used.index.droplevel("day_offset")).to_numpy()
    if ((used["sum"] > 0) & (used["size"] > room)).any():
        broken.append("a wave holds more parcels than its capacity after the merge's")
    merged = rows[rows.from_merge]
    keys = pd.MultiIndex.from_frame(merged[["node_id", "wave"]])
    leaves = waves.cutoff_minute.reindex(keys).to_numpy() + 1440 * merged.day_offset.to_numpy()
    if (leaves > merged.deadline_minute.fillna(np.inf).to_numpy()).any():
        broken.append("a merge parcel leaves after an order's deadline")
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--co2-price", type=float, default=0.0)
    args = parser.parse_args()

    orders, waves = synthetic_day(args.orders, args.seed)
    tariff, rules = world_tariff(), PackRules(co2_price=args.co2_price)
    print(f"cores: {os.cpu_count()}; seed {args.seed}; co2_price {args.co2_price}")
    print(
        f"orders: {len(orders):,}; mergeable: {int(orders.mergeable.sum()):,}; "
        f"nodes: {orders.node_id.nunique()}; addresses: {orders.address_id.nunique():,}; "
        f"waves: {len(waves)}"
    )
    started = time.perf_counter()
    plan = consolidate(orders, waves, tariff, rules)
    seconds = time.perf_counter() - started
    print(f"consolidate: {seconds:.2f} s (target: well under 30 s on 2 cores)")
    broken = invariants(plan, orders, waves, rules)
    print("invariants: " + ("all hold" if not broken else "BROKEN: " + "; ".join(broken)))
    reasons = plan.released.reason.value_counts().to_dict()
    print(f"released from the merge: {len(plan.released):,} {reasons}")
    print(
        "merged plan against the baseline (the same orders unmerged, each its own parcel in its\n"
        "earliest wave with room; the same tariff, batch costs and CO2 model):"
    )
    m, b = plan.summary["merged"], plan.summary["baseline"]
    print(f"  {'':22}{'baseline':>12}{'merged':>12}{'change':>10}")
    for key, fmt in (
        ("parcels", "{:,.0f}"),
        ("batches", "{:,.0f}"),
        ("batches_per_node_day", "{:.2f}"),
        ("cost_per_order", "{:.3f}"),
        ("co2_per_order", "{:.3f}"),
    ):
        change = (m[key] - b[key]) / b[key] if b[key] else 0.0
        print(f"  {key:22}{fmt.format(b[key]):>12}{fmt.format(m[key]):>12}{change:>+10.1%}")


if __name__ == "__main__":
    main()
