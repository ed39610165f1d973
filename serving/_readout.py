"""A simulated campaign read out: the same orders merged and unmerged, and treatment against
control.

Each day of the campaign, the parcels the world made (one per order and node) are consolidated
as the service would: an accepted offer's order is mergeable unless an exit condition holds
(an item breaking a rule, or a move between accepting and ordering); every other order ships as
the shop ships it. `baseline` is the same parcels unmerged, `merged` the plan, both priced with
the tariff learned from the history before the campaign and its CO2 model. Lateness is the
world's own: a parcel's delivery moves with its wave, on its own transit time.

The A/B part follows every shopper assigned to a group from their first eligible day to the
campaign's end (intention to treat): orders per shopper and cost per order (the merged plan's
cost, each parcel's shared by its orders, each batch's by its parcels), treatment minus
control, with 95% intervals from a shopper bootstrap.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from cadence.serving._campaign import CampaignPolicy
from cadence.serving._config import ServingConf
from cadence.serving._consolidate import consolidate
from cadence.serving._plan import DAY_MINUTES, Logistics, pack_rules
from cadence.serving._rules import Item, item_exit

MINUTE = pd.Timedelta(minutes=1)


def offer_orders(offers: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """The orders accepted offers became (the explicit confirmations), with their acceptance."""
    accepted = offers[(offers.response == "accepted") & offers.order_id.notna()]
    accepted = accepted[accepted.user_id.isin(groups.user_id[groups.arm == "treatment"])]
    return accepted[["offer_id", "user_id", "responded_at", "order_id"]].astype(
        {"order_id": np.int64}
    )


def exits(
    confirmed: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    conf: ServingConf,
    usual: dict[tuple[str, str], int] | None,
) -> pd.Series:
    """Per confirmed order id, the exit reason (None: it stays in the merge)."""
    items = tables["order_items"].merge(tables["products"], on="sku")
    items = items[items.order_id.isin(confirmed.order_id)]
    users = dict(zip(confirmed.order_id, confirmed.user_id, strict=True))
    reason: dict[int, str | None] = dict.fromkeys(confirmed.order_id.tolist())
    for row in items.itertuples():
        if reason[row.order_id] is not None:
            continue
        known = None if usual is None else usual.get((users[row.order_id], row.category), 0)
        item = Item(
            sku=row.sku,
            category=row.category,
            quantity=int(row.quantity),
            unit_price=float(row.unit_price),
            weight_kg=float(row.weight_kg),
            volume_cm3=float(row.volume_cm3),
            fragile=bool(row.fragile),
        )
        reason[row.order_id] = item_exit(item, conf.exits, known)
    if conf.exits.address_change and len(tables["address_changes"]):
        placed = tables["orders"].set_index("order_id").ordered_at
        moves = tables["address_changes"].merge(confirmed, on="user_id")
        moved = moves[
            (moves.changed_at > moves.responded_at)
            & (moves.changed_at < moves.order_id.map(placed))
        ]
        for order_id in moved.order_id.unique():
            reason[order_id] = reason[order_id] or "address_changed"
    return pd.Series(reason, dtype=object)


def _addresses(tables: dict[str, pd.DataFrame], parcels: pd.DataFrame) -> pd.DataFrame:
    """Each parcel's address and city as of its order (a move changes both)."""
    users = tables["users"][["user_id", "address_id", "city"]]
    out = parcels.merge(users, on="user_id", how="left")
    moves = tables["address_changes"]
    if len(moves):
        moves = moves.sort_values("changed_at")[["user_id", "changed_at", "address_id", "city"]]
        keyed = out.sort_values("ordered_at").reset_index()
        latest = pd.merge_asof(
            keyed,
            moves.rename(columns={"address_id": "moved_to", "city": "moved_city"}),
            left_on="ordered_at",
            right_on="changed_at",
            by="user_id",
            direction="backward",
        ).set_index("index")
        moved = latest.moved_to.notna()
        out.loc[moved[moved].index, "address_id"] = latest.moved_to[moved]
        out.loc[moved[moved].index, "city"] = latest.moved_city[moved]
    return out


def day_input(
    day: dt.date, parcels: pd.DataFrame, logistics: Logistics, mergeable: set[int]
) -> pd.DataFrame:
    """The day's parcels (one per order and node) as consolidation takes them."""
    midnight = pd.Timestamp(day, tz="UTC")
    p = parcels[parcels.ordered_at.dt.date == day]
    transit = [logistics.transit_days.get(k, np.nan) for k in zip(p.zone, p.carrier, strict=True)]
    latest = (p.promised_at - midnight) / MINUTE - np.asarray(transit) * DAY_MINUTES
    return pd.DataFrame(
        {
            "order_id": p.shipment_id.to_numpy(np.int64),
            "user_id": p.user_id.to_numpy(),
            "address_id": p.address_id.to_numpy(),
            "area": p.city.to_numpy(),
            "node_id": p.node_id.to_numpy(),
            "node_kind": p.node_id.map(logistics.node_kind).to_numpy(),
            "zone": p.zone.to_numpy(),
            "carrier": p.carrier.to_numpy(),
            "distance_km": p.distance_km.to_numpy(float),
            "weight_kg": p.actual_weight_kg.to_numpy(float),
            "volume_cm3": p.volume_cm3.to_numpy(float),
            "ready_minute": ((p.ordered_at - midnight) / MINUTE).astype(np.int64).to_numpy(),
            "deadline_minute": (latest - logistics.handover_minutes).to_numpy(float),
            "mergeable": p.order_id.isin(mergeable).to_numpy(),
        }
    )


def read_out(
    policy: CampaignPolicy,
    tables: dict[str, pd.DataFrame],
    logistics: Logistics,
    conf: ServingConf,
    usual: dict[tuple[str, str], int] | None,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    groups = policy.groups()
    end = policy.start + dt.timedelta(days=policy.days)
    confirmed = offer_orders(tables["offers"], groups)
    exit_reason = exits(confirmed, tables, conf, usual)
    mergeable = set(exit_reason.index[exit_reason.isna()].astype(np.int64))
    orders = tables["orders"]
    parcels = tables["shipments"].merge(
        orders[["order_id", "user_id", "ordered_at"]], on="order_id"
    )
    parcels = _addresses(tables, parcels)
    days = [policy.start + dt.timedelta(days=i) for i in range(policy.days)]
    rules = pack_rules(conf.consolidation)
    totals = {k: _Totals() for k in ("baseline", "merged")}
    cost_of: dict[int, float] = {}
    unconfirmed_merges = 0
    for day in days:
        frame = day_input(day, parcels, logistics, mergeable)
        if frame.empty:
            continue
        plan = consolidate(frame, logistics.waves, logistics.tariff, rules)
        late = _lateness(frame, plan, parcels, logistics)
        totals["baseline"].add(plan.baseline_parcels, plan.baseline_batches, late["baseline"])
        totals["merged"].add(plan.parcels, plan.batches, late["merged"])
        unit = plan.assignments.merge(plan.parcels, on="parcel_id")
        shared = unit.groupby("parcel_id").order_id.transform("size")
        unconfirmed_merges += int(
            ((shared > 1) & ~unit.order_id.isin(frame.order_id[frame.mergeable])).sum()
        )
        per_parcel = _batch_share(plan.parcels, plan.batches)
        unit_cost = unit.parcel_id.map(per_parcel) / shared
        order_of = dict(zip(parcels.shipment_id, parcels.order_id, strict=True))
        for sid, c in zip(unit.order_id, unit_cost, strict=True):
            oid = order_of[int(sid)]
            cost_of[oid] = cost_of.get(oid, 0.0) + float(c)
    window = orders[(orders.ordered_at.dt.date >= policy.start) & (orders.ordered_at.dt.date < end)]
    return {
        "window": {"start": policy.start.isoformat(), "days": policy.days},
        "shoppers": {
            "assigned": len(groups),
            "treatment": int((groups.arm == "treatment").sum()),
            "control": int((groups.arm == "control").sum()),
        },
        "offers": {
            "sent": len(policy.sent),
            "accepted": int((tables["offers"].response == "accepted").sum()),
            "cancelled": int((tables["offers"].response == "cancelled").sum()),
            "orders": len(confirmed),
            "merged": len(mergeable),
            "exits": {str(k): int(v) for k, v in exit_reason.dropna().value_counts().items()},
        },
        "baseline": totals["baseline"].result(),
        "merged": totals["merged"].result(),
        "merged_without_confirmation": unconfirmed_merges,
        "ab": _ab(groups, window, cost_of, end, resamples=resamples, seed=seed),
    }


class _Totals:
    def __init__(self) -> None:
        self.parcels = self.batches = self.node_days = self.late = self.known = 0
        self.cost = self.co2 = 0.0
        self.orders: set[int] = set()

    def add(self, parcels: pd.DataFrame, batches: pd.DataFrame, late: pd.Series) -> None:
        self.parcels += len(parcels)
        self.batches += len(batches)
        self.node_days += len(batches[["node_id", "day_offset"]].drop_duplicates())
        self.cost += float(parcels.cost.sum() + batches.batch_cost.sum())
        self.co2 += float(parcels.co2_kg.sum() + batches.co2_kg.sum())
        self.late += int(late.sum())
        self.known += int(late.notna().sum())
        self.orders |= set(late.index)

    def result(self) -> dict[str, float]:
        n = max(len(self.orders), 1)
        return {
            "orders": len(self.orders),
            "parcels": self.parcels,
            "batches": self.batches,
            "batches_per_node_day": self.batches / max(self.node_days, 1),
            "cost_per_order": self.cost / n,
            "co2_per_order": self.co2 / n,
            "late_rate": self.late / max(self.known, 1),
        }


def _batch_share(parcels: pd.DataFrame, batches: pd.DataFrame) -> pd.Series:
    """Each parcel's cost with its share of its batch's handling cost."""
    key = ["node_id", "wave", "day_offset"]
    per = batches.set_index(key).batch_cost / batches.set_index(key).parcels
    share = parcels.join(per.rename("share"), on=key).share.fillna(0.0)
    return pd.Series(parcels.cost.to_numpy() + share.to_numpy(), index=parcels.parcel_id)


def _lateness(frame, plan, parcels, logistics: Logistics) -> dict[str, pd.Series]:
    """Per order (the world's order id), late or not under each plan: the world's delivery,
    moved by the difference between the plan's cut-off and the world's own wave."""
    info = parcels.set_index("shipment_id").loc[frame.order_id.to_numpy()].reset_index()
    midnight = info.ordered_at.dt.normalize()
    cutoffs = logistics.waves.set_index(["node_id", "wave"]).cutoff_minute
    rows = {
        "baseline": plan.baseline_parcels.set_index("parcel_id").reindex(np.arange(len(frame))),
        "merged": plan.assignments.merge(plan.parcels, on="parcel_id")
        .set_index("order_id")
        .loc[frame.order_id.to_numpy()],
    }
    out = {}
    for name, at in rows.items():
        keys = pd.MultiIndex.from_arrays([at.node_id.to_numpy(), at.wave.to_numpy()])
        minutes = cutoffs.reindex(keys).to_numpy(float) + at.day_offset.to_numpy() * DAY_MINUTES
        cutoff = midnight + pd.to_timedelta(minutes, unit="min")
        moved = info.delivered_at + (cutoff - info.wave_at)
        late = (moved > info.promised_at).astype(float)
        late[moved.isna()] = np.nan
        out[name] = late.groupby(info.order_id.to_numpy()).max()
    return out


def _ab(groups, window, cost_of, end, *, resamples: int, seed: int) -> dict[str, Any]:
    """Treatment minus control: orders per shopper and cost per shipped order, 95% intervals
    from resampling shoppers within each group."""
    first = dict(zip(groups.user_id, groups.first_day, strict=True))
    mine = window[window.user_id.isin(first)]
    mine = mine[mine.ordered_at.dt.date >= mine.user_id.map(first)]
    n = mine.groupby("user_id").size().reindex(groups.user_id, fill_value=0).to_numpy(float)
    cost = mine.order_id.map(cost_of)
    shipped = cost.notna()
    c = cost[shipped].groupby(mine.user_id[shipped]).sum()
    k = shipped.groupby(mine.user_id).sum()
    cost_sum = c.reindex(groups.user_id, fill_value=0.0).to_numpy(float)
    shipped_n = k.reindex(groups.user_id, fill_value=0).to_numpy(float)
    arm = (groups.arm == "treatment").to_numpy()
    rng = np.random.default_rng(seed)
    stats = {"orders_per_shopper": [], "cost_per_order": []}
    point = _arms(arm, n, cost_sum, shipped_n, None)
    for _ in range(resamples):
        stats_b = _arms(arm, n, cost_sum, shipped_n, rng)
        for key in stats:
            stats[key].append(stats_b[key][2])
    out = {}
    for key, (t, c_, d) in point.items():
        lo, hi = np.nanpercentile(stats[key], [2.5, 97.5]) if resamples else (np.nan, np.nan)
        out[key] = {
            "treatment": t,
            "control": c_,
            "difference": d,
            "interval": [float(lo), float(hi)],
            "relative": d / c_ if c_ else None,
        }
    out["shoppers"] = {"treatment": int(arm.sum()), "control": int((~arm).sum())}
    return out


def _arms(arm, n, cost_sum, shipped_n, rng):
    vals = {}
    picks = {}
    for side, mask in (("t", arm), ("c", ~arm)):
        idx = np.flatnonzero(mask)
        if rng is not None and idx.size:
            idx = rng.choice(idx, idx.size)
        picks[side] = idx
    for key in ("orders_per_shopper", "cost_per_order"):
        out = []
        for side in ("t", "c"):
            idx = picks[side]
            if key == "orders_per_shopper":
                out.append(float(n[idx].mean()) if idx.size else float("nan"))
            else:
                k = shipped_n[idx].sum()
                out.append(float(cost_sum[idx].sum() / k) if k else float("nan"))
        vals[key] = (out[0], out[1], out[0] - out[1])
    return vals
