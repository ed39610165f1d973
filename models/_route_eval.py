"""Replaying held-out days through each routing strategy, scored by the truth.

Each day starts from the stock the shop really held that morning; dispatch capacity used by a
strategy's parcels carries over to the next day. A plan that fills a wave past its capacity
(only `nearest` can: it does not look) has the excess parcels leave with the node's next wave, as
a warehouse would. The truth (`world.Fulfilment` on the simulated shop) prices and times every
parcel; strategies meet the same random luck per order.

The A/B read-out randomises orders between `nearest` and `optimal` (a fixed seed) and compares
the two arms' cost per order and next-day rate, with 95% bootstrap intervals over orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cadence.models._route_inputs import (
    DAY_US,
    Network,
    order_context,
    order_lines,
    with_region_code,
)
from cadence.models._route_plan import STRATEGIES, Batch, Estimate, Plan, Router

# The truth also says when each parcel arrived (`delivered_us`), for the next-day rate.
Truth = Callable[[pd.DataFrame], pd.DataFrame]


def day_batch(raw: Path, net: Network, day: pd.Timestamp, orders: pd.DataFrame, stock_of) -> Batch:
    """The day's shipped orders (not sold over a store's counter) as a batch."""
    start = day.tz_localize("UTC") if day.tzinfo is None else day
    todays = orders[
        (orders.ordered_at >= start) & (orders.ordered_at < start + pd.Timedelta(days=1))
    ]
    todays = todays[todays.channel.fillna("") != "store"].reset_index(drop=True)
    return batch_for(raw, net, todays, stock_of(start.date()))


def batch_for(raw: Path, net: Network, orders: pd.DataFrame, stock: np.ndarray) -> Batch:
    ctx = with_region_code(order_context(raw, orders), net)
    ctx["promise_us"] = net.promise_us(
        ctx.ordered_us.to_numpy(), ctx.dest_city.to_numpy(), ctx.dest_province.to_numpy()
    )
    lines = order_lines(raw, orders.order_id.to_numpy())
    skus = pd.read_parquet(raw / "products.parquet", columns=["sku"]).sku
    sku_index = pd.Series(np.arange(len(skus)), index=skus.to_numpy())
    row = pd.Series(np.arange(len(ctx)), index=ctx.order_id.to_numpy())
    lines = lines[lines.order_id.isin(row.index)]
    # Two lines of one SKU in an order draw on the same shelf: routing sees them as one.
    lines = (
        lines.assign(value=lines.unit_price * lines.quantity)
        .groupby(["order_id", "sku"], sort=False, as_index=False)
        .agg(
            quantity=("quantity", "sum"),
            value=("value", "sum"),
            weight_kg=("weight_kg", "first"),
            volume_cm3=("volume_cm3", "first"),
            fragile=("fragile", "first"),
        )
    )
    q = lines.quantity.to_numpy(np.float64)
    batch = Batch(
        orders=ctx,
        line_order=row.reindex(lines.order_id).to_numpy(np.int64),
        line_sku=sku_index.reindex(lines.sku).fillna(-1).to_numpy(np.int64),
        line_qty=lines.quantity.to_numpy(np.int64),
        line_weight=lines.weight_kg.fillna(0).to_numpy() * q,
        line_volume=lines.volume_cm3.fillna(0).to_numpy() * q,
        line_fragile=lines.fragile.fillna(False).to_numpy(bool),
        line_value=lines.value.to_numpy(np.float64),
        stock=stock,
    )
    # Contents per order, for the models' order columns.
    for c, v in (
        ("weight_kg", batch.line_weight),
        ("volume_cm3", batch.line_volume),
        ("units", batch.line_qty.astype(float)),
        ("value", batch.line_value),
    ):
        ctx[c] = np.bincount(batch.line_order, weights=v, minlength=len(ctx))
    ctx["fragile"] = (
        np.bincount(batch.line_order, weights=batch.line_fragile.astype(float), minlength=len(ctx))
        > 0
    ).astype(float)
    return batch


def stock_reader(raw: Path, net: Network) -> Callable:
    """Stock per (node, SKU) on the morning of a date, from the inventory table."""
    inv = pd.read_parquet(raw / "inventory.parquet", columns=["date", "node_id", "sku", "on_hand"])
    skus = pd.read_parquet(raw / "products.parquet", columns=["sku"]).sku
    sku_index = {s: i for i, s in enumerate(skus)}
    node_index = {n: i for i, n in enumerate(net.node_id)}
    inv["date"] = pd.to_datetime(inv.date).dt.date
    by_date = dict(tuple(inv.groupby("date")))

    def stock_of(date) -> np.ndarray:
        out = np.zeros((net.n, len(skus)), dtype=np.int64)
        d = by_date.get(date)
        if d is not None:
            out[d.node_id.map(node_index).to_numpy(), d.sku.map(sku_index).to_numpy()] = d.on_hand
        return out

    return stock_of


def contents_of(batch: Batch, plan: Plan) -> dict[str, np.ndarray]:
    """What each of the plan's parcels carries: weight, volume, units, value, fragile."""
    n = plan.parcel_node.size
    p = plan.line_parcel
    has = p >= 0
    out = {
        c: np.bincount(p[has], weights=v[has], minlength=n)
        for c, v in (
            ("weight_kg", batch.line_weight),
            ("volume_cm3", batch.line_volume),
            ("units", batch.line_qty.astype(float)),
            ("value", batch.line_value),
        )
    }
    fragile = np.bincount(p[has], weights=batch.line_fragile[has].astype(float), minlength=n)
    out["fragile"] = (fragile > 0).astype(float)
    return out


def parcels_of(batch: Batch, plan: Plan) -> pd.DataFrame:
    """The plan's parcels as rows: the order's columns, node, carrier, wave, contents."""
    o = batch.orders.iloc[plan.parcel_order].reset_index(drop=True).copy()
    for c, v in contents_of(batch, plan).items():
        o[c] = v
    o["node"] = plan.parcel_node
    o["carrier"] = plan.parcel_carrier
    o["wave_us"] = plan.parcel_wave
    o["part"] = plan.parcel_part
    o["order_row"] = plan.parcel_order
    return o


def settle(router: Router, batch: Batch, plan: Plan) -> None:
    """Moves parcels past a wave's capacity to the node's next wave, latest orders first."""
    for _ in range(50):
        slots = list(zip(plan.parcel_node.tolist(), plan.parcel_wave.tolist(), strict=True))
        if not slots:
            return
        frame = pd.DataFrame(
            {"slot": slots, "t": batch.orders.ordered_us.to_numpy()[plan.parcel_order]}
        ).reset_index()
        frame = frame.sort_values(["t", "index"])
        frame["rank"] = frame.groupby("slot").cumcount()
        frame["cap"] = [router.capacity_left(batch, s) for s in frame.slot]
        over = frame[frame["rank"] >= frame.cap]["index"].to_numpy()
        if not over.size:
            return
        plan.parcel_wave[over] = router.net.waves_after(
            plan.parcel_node[over],
            plan.parcel_wave[over] + 60_000_000 - int(router.net.lead_hours * 3.6e9),
            1,
        )[:, 0]


def order_outcomes(
    batch: Batch, plan: Plan, truth: Truth, parcels: list[pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Per order: true cost, damage loss, arrival, parcels, days, next day and lateness.
    `parcels`: where given, the plan's parcel rows with their true arrival are appended."""
    rows = parcels_of(batch, plan)
    served = pd.DataFrame(
        {"order_row": np.arange(len(batch.orders)), "order_id": batch.orders.order_id.to_numpy()}
    )
    if rows.empty:
        served["assigned"] = False
        return served
    t = truth(rows)
    rows = rows.assign(
        cost=t.cost.to_numpy(),
        damage_loss=t.damage_loss.to_numpy() if "damage_loss" in t else 0.0,
        delivered_us=t.delivered_us.to_numpy(),
    )
    if parcels is not None:
        parcels.append(rows)
    g = rows.groupby("order_row")
    per = pd.DataFrame(
        {
            "cost": g.cost.sum(),
            "damage_loss": g.damage_loss.sum(),
            "delivered_us": g.delivered_us.max(),
            "parcels": g.size(),
        }
    )
    out = served.join(per, on="order_row")
    out["assigned"] = out.parcels.notna()
    o = batch.orders
    ordered = o.ordered_us.to_numpy()
    day0 = ordered // DAY_US * DAY_US
    out["days"] = (out.delivered_us - ordered) / DAY_US
    out["next_day"] = out.delivered_us < day0 + 2 * DAY_US
    out["late"] = out.delivered_us > o.promise_us.to_numpy()
    return out


def replay(
    days: Iterable[pd.Timestamp],
    batches: Callable[[pd.Timestamp], Batch],
    router: Router,
    estimate: Estimate,
    truth: Truth,
    strategies: tuple[str, ...] = STRATEGIES,
    on_day: Callable[[pd.Timestamp], None] | None = None,
    parcels: dict[str, list[pd.DataFrame]] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Every strategy over the days; returns per-strategy order outcomes and solver notes.
    `parcels`: strategy -> a list the strategy's parcel rows (with true arrival) go to."""
    used: dict[str, dict] = {s: {} for s in strategies}
    results: dict[str, list[pd.DataFrame]] = {s: [] for s in strategies}
    notes: dict[str, dict] = {
        s: {
            "capacity_violations": 0,
            "stock_violations": 0,
            "unassigned": {},
            "gaps": [],
            "methods": set(),
            "seconds": 0.0,
        }
        for s in strategies
    }
    for day in days:
        base = batches(day)
        for s in strategies:
            batch = Batch(**{**base.__dict__, "used": used[s]})
            plan = router.plan(s, batch, estimate, truth)
            note = notes[s]
            note["capacity_violations"] += plan.capacity_violations
            note["stock_violations"] += plan.stock_violations
            note["methods"].add(plan.method)
            note["seconds"] += plan.seconds
            if plan.gap is not None:
                note["gaps"].append(plan.gap)
            for r, why in plan.unassigned.items():
                note["unassigned"][int(batch.orders.order_id.iloc[r])] = why
            settle(router, batch, plan)
            router.commit(batch, plan)
            kept = None if parcels is None else parcels.get(s)
            results[s].append(order_outcomes(batch, plan, truth, kept).assign(day=day.date()))
        if on_day is not None:
            on_day(day)
    return {s: pd.concat(v, ignore_index=True) for s, v in results.items()}, notes


def summary(outcomes: dict[str, pd.DataFrame], notes: dict[str, dict]) -> dict[str, dict]:
    """The strategy table: per strategy, over the orders every strategy assigned."""
    common = None
    for frame in outcomes.values():
        ids = set(frame.order_id[frame.assigned])
        common = ids if common is None else common & ids
    out: dict[str, dict] = {}
    for s, frame in outcomes.items():
        f = frame[frame.order_id.isin(common or set())]
        n = len(f)
        note = notes[s]
        out[s] = {
            "orders": int(n),
            "unassigned": int((~frame.assigned).sum()),
            "cost_total": round(float(f.cost.sum()), 2),
            "cost_per_order": round(float(f.cost.mean()), 4) if n else None,
            "damage_loss_per_order": round(float(f.damage_loss.mean()), 4) if n else None,
            "next_day_rate": round(float(f.next_day.mean()), 4) if n else None,
            "on_time_rate": round(float(1 - f.late.mean()), 4) if n else None,
            "mean_delivery_days": round(float(f.days.mean()), 4) if n else None,
            "split_rate": round(float((f.parcels > 1).mean()), 4) if n else None,
            "capacity_violations": int(note["capacity_violations"]),
            "stock_violations": int(note["stock_violations"]),
            "solver": ", ".join(sorted(m for m in note["methods"] if m)),
            "max_gap": round(max(note["gaps"]), 6) if note["gaps"] else None,
            "solve_seconds": round(note["seconds"], 3),
        }
    base = out.get("nearest", {}).get("cost_per_order")
    bound = out.get("clairvoyant", {}).get("cost_per_order")
    for row in out.values():
        c = row["cost_per_order"]
        row["cost_vs_nearest"] = round(c / base - 1, 4) if c is not None and base else None
        row["gap_to_clairvoyant"] = round(c / bound - 1, 4) if c is not None and bound else None
    return out


def ab_readout(
    outcomes: dict[str, pd.DataFrame],
    *,
    a: str = "nearest",
    b: str = "optimal",
    seed: int = 0,
    n_boot: int = 2000,
) -> dict:
    """Orders randomised half to `a`, half to `b`: each arm's cost per order and next-day rate,
    and b minus a with 95% bootstrap intervals over orders."""
    fa, fb = (outcomes[x].set_index("order_id") for x in (a, b))
    ids = np.array(sorted(set(fa.index[fa.assigned]) & set(fb.index[fb.assigned])))
    rng = np.random.default_rng(seed)
    arm_b = rng.random(ids.size) < 0.5
    ra, rb = fa.loc[ids[~arm_b]], fb.loc[ids[arm_b]]
    out = {"arms": {a: int(len(ra)), b: int(len(rb))}}
    for metric, col in (("cost_per_order", "cost"), ("next_day_rate", "next_day")):
        xa, xb = ra[col].to_numpy(float), rb[col].to_numpy(float)
        diff = xb.mean() - xa.mean()
        boots = np.array(
            [rng.choice(xb, xb.size).mean() - rng.choice(xa, xa.size).mean() for _ in range(n_boot)]
        )
        out[metric] = {
            a: round(float(xa.mean()), 4),
            b: round(float(xb.mean()), 4),
            "difference": round(float(diff), 4),
            "ci95": [
                round(float(np.quantile(boots, 0.025)), 4),
                round(float(np.quantile(boots, 0.975)), 4),
            ],
        }
    return out


def extrapolation(
    router: Router,
    batches: Iterable[Batch],
    stored,
    net: Network,
    weather,
    node_features,
    truth: Truth,
    shares: pd.Series,
) -> pd.DataFrame:
    """The models against the truth on every node and carrier that could have shipped the
    held-out orders (first wave each), by how often the legacy rule chose that node for that
    destination city in the training history: where the history is thin, the models guess."""
    from cadence.models._route_code import predict, quantile_column
    from cadence.models._route_inputs import pair_frame
    from cadence.models._route_models import RULE_BUCKETS

    q_hi = quantile_column(max(stored.settings["quantiles"]))
    parts = []
    for batch in batches:
        whole = router.whole(batch, batch.stock)
        r, n = np.nonzero(whole)
        if not r.size:
            continue
        opt, wave, carrier = router.expand(batch, r, n, 1)
        rows = router.rows(batch, r[opt], n[opt], np.zeros(opt.size), carrier, wave)
        frame = pair_frame(
            net,
            rows,
            rows.node.to_numpy(),
            rows.carrier.to_numpy(),
            rows.wave_us.to_numpy(),
            weather,
            node_features,
        )
        p = predict(stored, frame)
        t = truth(rows)
        wait = (rows.wave_us.to_numpy() - rows.ordered_us.to_numpy()) / DAY_US
        parts.append(
            pd.DataFrame(
                {
                    "dest_city": rows.dest_city.to_numpy(),
                    "node": rows.node.to_numpy(),
                    "error": p.cost.to_numpy() - (t.cost - t.damage_loss).to_numpy(),
                    "covered": (t.days.to_numpy() - wait) <= p[q_hi].to_numpy(),
                }
            )
        )
    if not parts:
        return pd.DataFrame()
    f = pd.concat(parts, ignore_index=True)
    key = pd.MultiIndex.from_arrays([f.dest_city, f.node])
    share = shares.reindex(key).fillna(0.0).to_numpy()
    bucket = np.digitize(share, RULE_BUCKETS[1:-1])
    out = []
    for b in range(len(RULE_BUCKETS) - 1):
        m = bucket == b
        if m.any():
            out.append(
                {
                    "rule_share": f"{RULE_BUCKETS[b]:.0%}-{RULE_BUCKETS[b + 1]:.0%}",
                    "options": int(m.sum()),
                    "cost_mae": round(float(np.abs(f.error[m]).mean()), 4),
                    "cost_bias": round(float(f.error[m].mean()), 4),
                    f"{q_hi}_coverage": round(float(f.covered[m].mean()), 4),
                }
            )
    return pd.DataFrame(out)


def _units_taken(batch: Batch, plan: Plan, shape) -> np.ndarray:
    taken = np.zeros(shape, dtype=np.int64)
    lines = np.flatnonzero(plan.line_parcel >= 0)
    node = plan.parcel_node[plan.line_parcel[lines]]
    np.add.at(taken, (node, batch.line_sku[lines]), batch.line_qty[lines])
    return taken


def replay_prepositioned(
    days: list[pd.Timestamp],
    batches: Callable[[pd.Timestamp], Batch],
    router: Router,
    estimate: Estimate,
    truth: Truth,
    propose: Callable[[pd.Timestamp, np.ndarray], pd.DataFrame],
    horizon_days: int,
) -> dict:
    """`optimal` over the days twice: as the stock was, and with the transfers `propose` makes
    each `horizon_days` (arriving that morning). Transferred units a plan takes are gone the
    next day; units taken from a donor stay missing for the window."""
    base_used: dict = {}
    moved_used: dict = {}
    costs = {"without": [], "with": []}
    transfer_cost = 0.0
    units = 0
    delta = None
    for i, day in enumerate(days):
        batch = batches(day)
        if i % horizon_days == 0:
            moves = propose(day, batch.stock)
            delta = np.zeros_like(batch.stock)
            if len(moves):
                np.subtract.at(delta, (moves.from_node, moves.sku), moves.units)
                np.add.at(delta, (moves.to_node, moves.sku), moves.units)
                transfer_cost += float(moves.cost.sum())
                units += int(moves.units.sum())
        for name, used, stock in (
            ("without", base_used, batch.stock),
            ("with", moved_used, np.maximum(batch.stock + delta, 0)),
        ):
            b = Batch(**{**batch.__dict__, "stock": stock, "used": used})
            plan = router.plan("optimal", b, estimate)
            router.commit(b, plan)
            out = order_outcomes(b, plan, truth)
            costs[name].append(out[out.assigned][["order_id", "cost", "next_day"]])
            if name == "with":
                beyond = np.maximum(_units_taken(b, plan, stock.shape) - batch.stock, 0)
                delta = np.where(delta > 0, np.maximum(delta - beyond, 0), delta)
    f = {k: pd.concat(v, ignore_index=True) for k, v in costs.items()}
    both = f["without"].merge(f["with"], on="order_id", suffixes=("_without", "_with"))
    saved = float(both.cost_without.sum() - both.cost_with.sum())
    return {
        "orders": int(len(both)),
        "transfers_units": units,
        "transfer_cost": round(transfer_cost, 2),
        "shipping_saved": round(saved, 2),
        "net_saving": round(saved - transfer_cost, 2),
        "cost_per_order_without": round(float(both.cost_without.mean()), 4),
        "cost_per_order_with": round(
            float((both.cost_with.sum() + transfer_cost) / max(len(both), 1)), 4
        ),
        "next_day_without": round(float(both.next_day_without.mean()), 4),
        "next_day_with": round(float(both.next_day_with.mean()), 4),
    }
