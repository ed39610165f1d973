"""Node features for routing: load against capacity, stock, recent lateness. Keyed by node."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from cadence.features._catalogue import (
    Family,
    Feature,
    days,
    exact_mean,
    ratio,
)

NODE_FEATURES = (
    Feature(
        "node_load_7d", "node", 7, "float64", "shipments per day over daily capacity, 7 days", 0.0
    ),
    Feature(
        "node_load_28d",
        "node",
        28,
        "float64",
        "shipments per day over daily capacity, 28 days",
        0.0,
    ),
    Feature(
        "node_pick_hours_28d",
        "node",
        28,
        "float64",
        "mean hours from order to hand-over, last 28 days",
    ),
    Feature(
        "node_late_rate_28d",
        "node",
        28,
        "float64",
        "share of parcels delivered in the last 28 days that were late",
    ),
    Feature(
        "node_on_hand_units",
        "node",
        None,
        "float64",
        "units in stock on the last day before the snapshot",
        0.0,
    ),
    Feature(
        "node_stockout_share_7d",
        "node",
        7,
        "float64",
        "share of (SKU, day) pairs out of stock over the last 7 days",
    ),
    Feature("node_shipped_units_7d", "node", 7, "float64", "units shipped in the last 7 days", 0.0),
)


def _node_features(src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    nodes, ships, orders, inv = src["nodes"], src["shipments"], src["orders"], src["inventory"]
    base = nodes.select("node_id", "daily_capacity").join(snaps, ibis.literal(True))

    s = ships.join(orders, "order_id").select(
        "node_id", "late", "shipped_at", "delivered_at", ordered_at=orders.ordered_at
    )
    j = s.join(snaps, s.ordered_at < snaps.snapshot_at)
    age = days(j.snapshot_at, j.ordered_at)
    handed = j.shipped_at.notnull() & (j.shipped_at < j.snapshot_at)
    hours = days(j.shipped_at, j.ordered_at) * 24.0
    known = j.delivered_at.notnull() & (j.delivered_at < j.snapshot_at)
    d_age = days(j.snapshot_at, j.delivered_at)
    recent = known & (d_age <= 28)
    load = j.group_by(["node_id", "snapshot_at"]).aggregate(
        n7=(age <= 7).ifelse(1, 0).sum(),
        n28=(age <= 28).ifelse(1, 0).sum(),
        node_pick_hours_28d=exact_mean((handed & (age <= 28)).ifelse(hours, ibis.null("float64"))),
        node_late_rate_28d=exact_mean(recent.ifelse(j.late.ifelse(1.0, 0.0), ibis.null("float64"))),
    )

    # A stock day is known once it has ended before the snapshot.
    k = inv.join(snaps, days(snaps.snapshot_at, inv.date.cast("timestamp")) >= 1)
    i_age = days(k.snapshot_at, k.date.cast("timestamp"))
    last = days(k.snapshot_at, k.date.cast("timestamp")) <= 1
    stock = k.group_by(["node_id", "snapshot_at"]).aggregate(
        node_on_hand_units=last.ifelse(k.on_hand - k.shipped, 0).sum().cast("float64"),
        node_stockout_share_7d=exact_mean(
            (i_age <= 7).ifelse((k.on_hand == 0).ifelse(1.0, 0.0), ibis.null("float64"))
        ),
        node_shipped_units_7d=(i_age <= 7).ifelse(k.shipped, 0).sum().cast("float64"),
    )
    keys = ["node_id", "snapshot_at"]
    out = base.left_join(load, keys).select(
        base, load.n7, load.n28, load.node_pick_hours_28d, load.node_late_rate_28d
    )
    out = out.left_join(stock, keys).select(
        out, stock.node_on_hand_units, stock.node_stockout_share_7d, stock.node_shipped_units_7d
    )
    cap = out.daily_capacity.cast("float64")
    return out.select(
        "node_id",
        "snapshot_at",
        node_load_7d=ratio(out.n7.fill_null(0), cap * 7),
        node_load_28d=ratio(out.n28.fill_null(0), cap * 28),
        node_pick_hours_28d=out.node_pick_hours_28d,
        node_late_rate_28d=out.node_late_rate_28d,
        node_on_hand_units=out.node_on_hand_units,
        node_stockout_share_7d=out.node_stockout_share_7d,
        node_shipped_units_7d=out.node_shipped_units_7d,
    )


NODE = Family(
    "node",
    ("nodes", "shipments", "orders", "inventory"),
    "fulfilment node load, stock and lateness (for routing)",
    None,
    entity="node_id",
    build=_node_features,
    built_features=NODE_FEATURES,
)
