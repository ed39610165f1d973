"""Routing: where one order ships from (or which store's shelf it is picked up from), its
arrival window, its release or dispatch; and the stock view every channel shares."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Path, Query, Response

from cadence.serving import _routing
from cadence.serving import _schemas as S
from cadence.serving._records import ServiceError
from cadence.serving.api.deps import ServiceDep, context, role

router = APIRouter(prefix="/v1", tags=["routing"])
Service = role("service")
Stocker = role("service", "admin")
OrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_SKEW = dt.timedelta(days=1)


def _shop(service) -> _routing.Shop:
    if service.routing is None:
        raise HTTPException(409, "this service has no routing data to decide with")
    try:
        return service.routing()
    except _routing.RoutingMissing as exc:
        raise HTTPException(409, str(exc)) from exc


@router.post("/routes", status_code=201)
async def route(
    body: S.RouteIn, response: Response, service: ServiceDep, caller=Service
) -> dict[str, Any]:
    """Decides where the order ships from (the champion routing models, the day's running wave
    loads, the stock free now) and reserves its units and wave slots in one transaction; or,
    for pickup, reserves them at the chosen store. A repeat of the same order returns the first
    answer (200); the same order id with other contents is a 409."""
    # Files, not the database: read off the writer's queue.
    shop = await anyio.to_thread.run_sync(_shop, service)
    now = service.clock()
    if body.ordered_at is not None and abs(body.ordered_at - now) > MAX_SKEW:
        raise HTTPException(422, f"ordered_at {body.ordered_at}: more than a day from now ({now})")
    order = _routing.OrderIn(
        order_id=body.order_id,
        city=body.destination.city,
        lat=body.destination.lat,
        lon=body.destination.lon,
        lines=tuple(_routing.Line(ln.sku, ln.quantity) for ln in body.lines),
        delivery=body.delivery,
        store_id=body.store_id,
        ordered_at=body.ordered_at,
    )

    def work():
        with service.sessions() as session:
            return _routing.route(context(service, session, caller), shop, order)

    try:
        answer, new = await service.run(work)
    except ServiceError as exc:
        service.metrics.routes.labels(body.delivery, exc.code).inc()
        raise
    if not new:
        response.status_code = 200
    else:
        service.metrics.routes.labels(body.delivery, "routed").inc()
    return answer


@router.post("/routes/{order_id}/release")
async def release(order_id: OrderId, service: ServiceDep, caller=Service) -> dict[str, Any]:
    """The order was cancelled: its units and wave slots go back. Idempotent."""

    def work():
        with service.sessions() as session:
            return _routing.release(context(service, session, caller), order_id)

    return await service.run(work)


@router.post("/routes/{order_id}/dispatch")
async def dispatch(order_id: OrderId, service: ServiceDep, caller=Service) -> dict[str, Any]:
    """The order's parcels left (or it was picked up): its units leave the shelves."""

    def work():
        with service.sessions() as session:
            return _routing.dispatch(context(service, session, caller), order_id)

    return await service.run(work)


@router.get("/orders/{order_id}/eta", dependencies=[Service])
async def eta(order_id: OrderId, service: ServiceDep) -> dict[str, Any]:
    """The arrival window to the hour (the delivery model's lowest to highest quantile after
    the parcel's wave), per parcel and for the order, with the share of parcels that arrived
    inside such windows in the latest replay; for pickup, when the order is ready."""

    def read():  # nothing written: off the writer's queue
        try:
            calibration = None if service.routing is None else service.routing().calibration
        except _routing.RoutingMissing:
            calibration = None
        with service.sessions() as session:
            return _routing.eta(session, calibration, order_id)

    return await anyio.to_thread.run_sync(read)


@router.put("/stock")
async def count(body: S.StockCountIn, service: ServiceDep, caller=Stocker) -> dict[str, Any]:
    """On-hand units per node and SKU from the shop's stock system; units held by open
    orders stay held."""
    items = [(r.node_id, r.sku, r.on_hand) for r in body.items]
    if len({(n, s) for n, s, _ in items}) != len(items):
        raise HTTPException(422, "items: a (node_id, sku) pair appears twice")

    def work():
        with service.sessions() as session:
            return _routing.set_stock(context(service, session, caller), items)

    return await service.run(work)


@router.post("/stock/sales")
async def sale(body: S.SaleIn, service: ServiceDep, caller=Service) -> dict[str, Any]:
    """A sale over a store's counter: the units leave the same stock the online orders see."""
    lines = [(ln.sku, ln.quantity) for ln in body.lines]

    def work():
        with service.sessions() as session:
            return _routing.sell(context(service, session, caller), body.node_id, lines)

    return await service.run(work)


@router.get("/stock", dependencies=[Stocker])
async def stock(
    service: ServiceDep,
    node_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    sku: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Stock rows: on hand, held by open orders, and free."""

    def read():
        with service.sessions() as session:
            return _routing.stock_rows(session, node_id, sku, limit)

    return {"rows": await anyio.to_thread.run_sync(read)}
