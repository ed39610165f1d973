"""Consolidation: the shipment plan of a ship date, made on request and kept."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from cadence.serving._plan import LogisticsMissing, plan_day
from cadence.serving._tables import Parcel, Plan
from cadence.serving.api.deps import ServiceDep, SessionDep, context, role

router = APIRouter(prefix="/v1/consolidations", tags=["consolidation"])
Service = role("service")


class ConsolidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ship_date: dt.date


@router.post("", status_code=201)
def make(body: ConsolidateIn, service: ServiceDep, session: SessionDep, caller=Service) -> dict:
    """Plans the ship date's orders: confirmed ones merged into parcels and batches, the rest
    as the shop ships them; exits checked first. Returns the plan's read-out against the same
    orders shipped unmerged."""
    if service.logistics is None:
        raise HTTPException(409, "this service has no logistics data to plan with")
    try:
        logistics = service.logistics()
    except LogisticsMissing as exc:
        raise HTTPException(409, str(exc)) from exc
    with service.writes():
        summary = plan_day(context(service, session, caller), body.ship_date, logistics)
    for gone in summary["exits"]:
        service.metrics.exits.labels(gone["reason"]).inc()
    return summary


@router.get("/{plan_id}", dependencies=[Service])
def read(
    plan_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """A plan's read-out and its parcels (paged)."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise HTTPException(404, f"no plan {plan_id}")
    parcels = session.scalars(
        select(Parcel)
        .where(Parcel.plan_id == plan_id)
        .order_by(Parcel.parcel_id)
        .offset(offset)
        .limit(limit)
    )
    columns = ("parcel_id", "node_id", "address_id", "area", "wave", "day_offset", "n_orders")
    columns += ("billed_kg", "cost", "co2_kg")
    return {
        "summary": plan.summary,
        "parcels": [{c: getattr(p, c) for c in columns} for p in parcels],
    }
