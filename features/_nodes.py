"""Node features for routing: load against capacity, stock, recent lateness. Keyed by node."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from cadence.features._catalogue import (
    DAY,
    Family,
    Feature,
    days,
    exact_mean,
    ratio,
    whole_seconds,
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
    # Each join reads only the days its windows look at (bounds in whole seconds, as `age`).
    sn = snaps.mutate(snap_s=whole_seconds(snaps.snapshot_at))
    sn = sn.mutate(from_28=sn.snap_s - 28 * 86400, from_7=sn.snap_s - 7 * 86400)

    s = ships.join(orders, "order_id").select(
        "node_id", "late", "shipped_at", "delivered_at", ordered_at=orders.ordered_at
    )
    s = s.mutate(ordered_s=whole_seconds(s.ordered_at), delivered_s=whole_seconds(s.delivered_at))
    # Parcels ordered in the last 28 days, and older ones delivered in them: nothing else
    # reaches an aggregate below.
    recent = s.join(sn, (s.ordered_at < sn.snapshot_at) & (s.ordered_s >= sn.from_28))
    late_news = s.join(
        sn,
        (s.ordered_s < sn.from_28)
        & (s.delivered_at < sn.snapshot_at)
        & (s.delivered_s >= sn.from_28),
    )
    j = recent.union(late_news)
    age = days(j.snapshot_at, j.ordered_at)
    handed = j.shipped_at.notnull() & (j.shipped_at < j.snapshot_at)
    hours = days(j.shipped_at, j.ordered_at) * 24.0
    known = j.delivered_at.notnull() & (j.delivered_at < j.snapshot_at)
    d_age = days(j.snapshot_at, j.delivered_at)
    recent_delivery = known & (d_age <= 28)
    load = j.group_by(["node_id", "snapshot_at"]).aggregate(
        n7=(age <= 7).ifelse(1, 0).sum(),
        n28=(age <= 28).ifelse(1, 0).sum(),
        node_pick_hours_28d=exact_mean((handed & (age <= 28)).ifelse(hours, ibis.null("float64"))),
        node_late_rate_28d=exact_mean(
            recent_delivery.ifelse(j.late.ifelse(1.0, 0.0), ibis.null("float64"))
        ),
    )

    # A stock day is known once it has ended before the snapshot; the last 7 such days count.
    i = inv.mutate(day_s=whole_seconds(inv.date.cast("timestamp")))
    k = i.join(sn, (i.day_s <= sn.snap_s - 86400) & (i.day_s >= sn.from_7))
    i_age = (k.snap_s - k.day_s).cast("float64") / DAY
    last = i_age < 2  # the day that ended last before the snapshot
    stock = k.group_by(["node_id", "snapshot_at"]).aggregate(
        on_hand=last.ifelse(k.on_hand - k.shipped, 0).sum().cast("float64"),
        node_stockout_share_7d=exact_mean((k.on_hand == 0).ifelse(1.0, 0.0)),
        shipped=k.shipped.sum().cast("float64"),
    )
    # A node with stock days before the snapshot, none of them recent, has 0 on hand and 0
    # shipped; one with none at all has no stock figures.
    first = i.group_by("node_id").aggregate(first_s=i.day_s.min())
    keys = ["node_id", "snapshot_at"]
    out = base.left_join(load, keys).select(
        base, load.n7, load.n28, load.node_pick_hours_28d, load.node_late_rate_28d
    )
    out = out.left_join(stock, keys).select(
        out, stock.on_hand, stock.node_stockout_share_7d, stock.shipped
    )
    out = out.left_join(first, "node_id").select(out, first.first_s)
    stocked = out.first_s <= whole_seconds(out.snapshot_at) - 86400
    cap = out.daily_capacity.cast("float64")
    return out.select(
        "node_id",
        "snapshot_at",
        node_load_7d=ratio(out.n7.fill_null(0), cap * 7),
        node_load_28d=ratio(out.n28.fill_null(0), cap * 28),
        node_pick_hours_28d=out.node_pick_hours_28d,
        node_late_rate_28d=out.node_late_rate_28d,
        node_on_hand_units=stocked.ifelse(out.on_hand.fill_null(0.0), ibis.null("float64")),
        node_stockout_share_7d=out.node_stockout_share_7d,
        node_shipped_units_7d=stocked.ifelse(out.shipped.fill_null(0.0), ibis.null("float64")),
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
