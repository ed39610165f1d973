"""A ship date's plan from the service's records: the day's orders, the exits checked again
just before consolidation, the consolidation itself, and the plan kept in SQL.

The shop's logistics come from its own history (`Logistics.from_raw`): the dispatch waves, each
node's kind, the tariff and the transit times learned from past shipments. An order's latest
wave is the last cut-off from which its carrier's 90th-percentile transit (plus the hand-over
after the cut-off) still arrives by the end of the date promised at confirmation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select, update

from cadence.serving._config import ConsolidationConf
from cadence.serving._consolidate import DAY_MINUTES, Co2Factors, PackRules, consolidate
from cadence.serving._events import exit_merge
from cadence.serving._records import Context, ServiceError, log
from cadence.serving._tables import Order, Parcel, ParcelOrder, Plan
from cadence.serving._tariff import Tariff, fit_tariff, fit_transit

# The plan's parcels, batches and exits are kept; these are the orders it may hold.
PLANNABLE = ("normal", "merging", "planned", "released")


class LogisticsMissing(LookupError):
    """The data has no nodes, dispatch waves or shipments to plan with."""


@dataclass(frozen=True)
class Logistics:
    waves: pd.DataFrame  # node_id, wave, cutoff_minute, capacity, batch_cost
    node_kind: dict[str, str]
    tariff: Tariff
    transit_days: dict[tuple[str, str], float]
    handover_minutes: float

    @classmethod
    def from_raw(cls, tables: dict[str, pd.DataFrame | None]) -> Logistics:
        """From the raw `nodes`, `dispatch_waves` and `shipments` tables."""
        missing = [n for n in ("nodes", "dispatch_waves", "shipments") if tables.get(n) is None]
        if missing:
            raise LogisticsMissing(
                "consolidation needs the shop's nodes, dispatch waves and shipment history; "
                f"the data has no {', '.join(missing)} table"
            )
        nodes, shipments = tables["nodes"], tables["shipments"]
        shipped = shipments.dropna(subset=["wave_at", "shipped_at"])
        handover = (shipped.shipped_at - shipped.wave_at).dt.total_seconds() / 60
        return cls(
            waves=tables["dispatch_waves"],
            node_kind=dict(zip(nodes.node_id, nodes.kind, strict=True)),
            tariff=fit_tariff(shipments, nodes),
            transit_days=fit_transit(shipments),
            handover_minutes=float(handover.quantile(0.9)) if len(handover) else 0.0,
        )


def pack_rules(conf: ConsolidationConf) -> PackRules:
    c = conf.co2
    return PackRules(
        max_weight_kg=conf.max_weight_kg,
        max_volume_cm3=conf.max_volume_cm3,
        lead_minutes=conf.lead_minutes,
        co2_price=conf.co2_price,
        co2=Co2Factors(van=c.van, truck=c.truck, air=c.air, stop_kg=c.stop_kg, batch_kg=c.batch_kg),
    )


def day_orders(ctx: Context, day: dt.date, logistics: Logistics) -> tuple[pd.DataFrame, dict]:
    """The day's orders as consolidation takes them, and each one's row by id."""
    rows = ctx.session.scalars(
        select(Order).where(Order.ship_date == day, Order.state.in_(PLANNABLE))
    ).all()
    by_id = {o.order_id: o for o in rows}
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    frame = pd.DataFrame(
        {
            "order_id": np.array([o.order_id for o in rows], dtype=np.int64),
            "user_id": [o.user_id for o in rows],
            "address_id": [o.address_id for o in rows],
            "area": [o.area for o in rows],
            "node_id": [o.node_id for o in rows],
            "zone": [o.zone for o in rows],
            "carrier": [o.carrier for o in rows],
            "distance_km": np.array([o.distance_km for o in rows], dtype=float),
            "weight_kg": np.array([o.weight_kg for o in rows], dtype=float),
            "volume_cm3": np.array([o.volume_cm3 for o in rows], dtype=float),
            "ready_minute": np.array(
                [max(0, int((o.placed_at - midnight).total_seconds() // 60)) for o in rows],
                dtype=np.int64,
            ),
            "deadline_minute": np.array(
                [_deadline(o, midnight, logistics, ctx) for o in rows], dtype=float
            ),
            "mergeable": np.array([o.state in ("merging", "planned") for o in rows], bool),
        }
    )
    unknown = sorted(set(frame.node_id) - set(logistics.node_kind))
    if unknown:
        raise ServiceError(
            422, "unknown_node", f"orders of {day} name node(s) not in the shop's data: {unknown}"
        )
    frame["node_kind"] = frame.node_id.map(logistics.node_kind)
    return frame, by_id


def _deadline(order: Order, midnight: dt.datetime, logistics: Logistics, ctx: Context) -> float:
    if not ctx.conf.exits.missed_promise:
        return float("nan")
    days = logistics.transit_days.get((order.zone, order.carrier))
    if days is None:
        return float("nan")
    end = dt.datetime.combine(order.promised_date, dt.time(), tzinfo=dt.UTC) + dt.timedelta(1)
    minutes = (end - midnight).total_seconds() / 60 - days * DAY_MINUTES
    return minutes - logistics.handover_minutes


def plan_day(ctx: Context, day: dt.date, logistics: Logistics) -> dict[str, Any]:
    """Consolidates the day's orders, releases those a merge would fail, keeps the plan."""
    orders, by_id = day_orders(ctx, day, logistics)
    plan = consolidate(
        orders, logistics.waves, logistics.tariff, pack_rules(ctx.conf.consolidation)
    )
    exits = []
    reasons = {"promise_missed": "missed_promise", "no_capacity": "no_capacity"}
    for order_id, reason in zip(plan.released.order_id, plan.released.reason, strict=True):
        order = by_id[int(order_id)]
        if order.state in ("merging", "planned"):
            exits.append(exit_merge(ctx, order, reasons.get(reason, reason)).model_dump())
    s = ctx.session
    record = Plan(ship_date=day, created_at=ctx.now, summary={})
    s.add(record)
    s.flush()
    parcels = plan.parcels
    s.add_all(
        Parcel(
            plan_id=record.plan_id,
            parcel_id=int(p.parcel_id),
            node_id=p.node_id,
            address_id=p.address_id,
            area=p.area,
            wave=int(p.wave),
            day_offset=int(p.day_offset),
            n_orders=int(p.n_orders),
            billed_kg=float(p.billed_kg),
            cost=float(p.cost),
            co2_kg=float(p.co2_kg),
        )
        for p in parcels.itertuples()
    )
    s.add_all(
        ParcelOrder(plan_id=record.plan_id, order_id=int(a.order_id), parcel_id=int(a.parcel_id))
        for a in plan.assignments.itertuples()
    )
    merged = plan.assignments.order_id[
        plan.assignments.parcel_id.isin(parcels.parcel_id[parcels.from_merge])
    ]
    planned = [int(i) for i in merged if by_id[int(i)].state in ("merging", "planned")]
    if planned:
        s.execute(
            update(Order)
            .where(Order.order_id.in_(planned))
            .values(state="planned", changed_at=ctx.now)
        )
    summary = {
        "plan_id": record.plan_id,
        "ship_date": day.isoformat(),
        **plan.summary,
        "exits": exits,
    }
    record.summary = summary
    log(ctx, "plan_made", plan_id=record.plan_id, ship_date=day.isoformat(), exits=len(exits))
    s.commit()
    return summary
