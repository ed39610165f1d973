"""Headline figures of a generated world, for the demo and for people checking a world."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def summarise(tables: dict[str, pa.Table], rows: dict[str, int]) -> dict[str, float]:
    """Row counts and a few behavioural figures from the raw tables (truth is not read)."""
    out: dict[str, float] = {f"rows.{name}": n for name, n in sorted(rows.items())}
    orders = tables.get("orders")
    users = tables.get("users")
    if orders is not None and orders.num_rows:
        buyers = pc.count_distinct(orders["user_id"]).as_py()
        out["buyers"] = buyers
        out["orders_per_buyer"] = round(orders.num_rows / buyers, 2)
        out["mean_order_value"] = round(pc.mean(orders["amount"]).as_py(), 2)
        if users is not None and users.num_rows:
            out["buyer_share"] = round(buyers / users.num_rows, 3)
    shipments = tables.get("shipments")
    if shipments is not None and shipments.num_rows:
        # Shares over the parcels delivered so far; none yet (a world of a day) gives none.
        for key, col, digits in (("late_share", "late", 3), ("damaged_share", "damaged", 4)):
            share = pc.mean(pc.cast(shipments[col], pa.float64())).as_py()
            if share is not None:
                out[key] = round(share, digits)
        out["mean_shipping_cost"] = round(pc.mean(shipments["cost"]).as_py(), 2)
        nodes = tables.get("nodes")
        if nodes is not None and {"node_id", "wave_at"} <= set(shipments.column_names):
            out.update(_batches(shipments, nodes))
    return out


def _batches(shipments: pa.Table, nodes: pa.Table) -> dict[str, float]:
    """Dispatch batches (a node and wave with a parcel) per warehouse and day it dispatched, the
    count the merge target is measured in, and parcels per batch."""
    warehouses = nodes.filter(pc.not_equal(nodes["kind"], "store"))["node_id"]
    sent = shipments.filter(
        pc.and_(pc.is_valid(shipments["wave_at"]), pc.is_in(shipments["node_id"], warehouses))
    )
    if not sent.num_rows:
        return {}
    day = pc.floor_temporal(sent["wave_at"], unit="day")
    t = pa.table({"node": sent["node_id"], "wave": sent["wave_at"], "day": day})
    batches = t.group_by(["node", "wave"]).aggregate([([], "count_all")])
    node_days = t.group_by(["node", "day"]).aggregate([])
    return {
        "warehouse_batches_per_day": round(batches.num_rows / node_days.num_rows, 2),
        "parcels_per_batch": round(sent.num_rows / batches.num_rows, 2),
    }
