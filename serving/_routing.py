"""Routing one order at a time, and the stock view every channel shares.

`route` decides where an order ships from with the champion routing models (the `greedy`
strategy on a one-order batch: the cheapest candidate that still fits), reading the stock
each node has free and the parcels each dispatch wave already took today from the database,
then takes both in one transaction by conditional UPDATEs:

    UPDATE stock SET reserved = reserved + q WHERE ... AND on_hand - reserved >= q
    UPDATE wave_loads SET parcels = parcels + 1 WHERE ... AND parcels < capacity

If another request took the units or the wave's last slot in between, nothing is kept and the
order is decided again on the new view (a few times, then 409). Rows are locked in one order
(stock by node and SKU, then waves), so concurrent requests on PostgreSQL never deadlock.

Store pickup reserves at the store the shopper chose; the order is ready when the store's next
picking wave has run. The answer carries the arrival window from the delivery model's lowest
and highest quantiles (`models._route_eta`) and how often parcels landed inside such windows
in the latest replay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cadence.serving._records import Context, ServiceError, log
from cadence.serving._tables import Reservation, Route, Stock, WaveLoad

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
ATTEMPTS = 5
# What the ETA shows of each parcel.
SHOWN = ("parcel", "node_id", "carrier", "wave_at", "window", "ready_at")


class RoutingMissing(LookupError):
    """The service has no routing model or network to decide with; the message says which."""


@dataclass
class Shop:
    """What a routing decision needs, loaded once: the network, the router and the champion's
    models, the catalogue, the cities, and the latest replay's window calibration."""

    net: Any  # models._route_inputs.Network
    router: Any  # models._route_plan.Router
    estimate: Any  # models._route_plan.ModelEstimate
    model_version: str
    products: pd.DataFrame  # index sku: weight_kg, volume_cm3, fragile, unit_price
    cities: pd.DataFrame  # index city: province, region, tier, lat, lon
    calibration: dict | None = None

    def __post_init__(self) -> None:
        from cadence.models._route_plan import Router

        self.node_index = {str(n): i for i, n in enumerate(self.net.node_id)}
        # The same router looking four times as many waves ahead (within three days), for an
        # order whose first waves are full wherever it is held.
        search = replace(self.router.search, waves=self.router.search.waves * 4)
        self.patient = Router(self.net, self.router.obj, search)
        self.region_code = {r: float(i) for i, r in enumerate(self.net.regions)}
        # Looked up on every request without pandas.
        self.city = {row.Index: row for row in self.cities.itertuples()}
        self.sku_row = {str(s): i for i, s in enumerate(self.products.index)}
        self.sku_weight = self.products.weight_kg.to_numpy(np.float64)
        self.sku_volume = self.products.volume_cm3.to_numpy(np.float64)
        self.sku_price = self.products.unit_price.to_numpy(np.float64)
        self.sku_fragile = self.products.fragile.fillna(False).to_numpy(bool)


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderIn:
    order_id: int
    city: str
    lines: tuple[Line, ...]
    delivery: str = "ship"  # or pickup
    store_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    ordered_at: dt.datetime | None = None

    def request(self) -> dict:
        return {
            "city": self.city,
            "lat": self.lat,
            "lon": self.lon,
            "delivery": self.delivery,
            "store_id": self.store_id,
            "lines": sorted([ln.sku, ln.quantity] for ln in self.lines),
        }


# --- deciding ---------------------------------------------------------------------------------


def _stamp(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / US, tz=dt.UTC)


def _us(t: dt.datetime) -> int:
    return int(round(t.timestamp() * US))


def _validate(shop: Shop, order: OrderIn) -> None:
    if order.city not in shop.city:
        raise ServiceError(422, "unknown_destination", f"destination.city {order.city!r}: unknown")
    unknown = sorted({ln.sku for ln in order.lines if ln.sku not in shop.sku_row})
    if unknown:
        raise ServiceError(
            422, "unknown_sku", f"lines: unknown SKU(s) {', '.join(map(repr, unknown[:5]))}"
        )
    if order.delivery == "pickup":
        node = shop.node_index.get(order.store_id or "")
        if node is None or shop.net.kind[node] != 2:
            raise ServiceError(
                422, "unknown_store", f"store_id {order.store_id!r}: not one of the shop's stores"
            )


def _merged(order: OrderIn) -> tuple[list[str], np.ndarray]:
    """The order's SKUs once each (two lines of one SKU draw on one shelf) and their units."""
    qty: dict[str, int] = {}
    for ln in order.lines:
        qty[ln.sku] = qty.get(ln.sku, 0) + ln.quantity
    skus = sorted(qty)
    return skus, np.array([qty[s] for s in skus], dtype=np.int64)


def _free_stock(session: Session, shop: Shop, skus: list[str]) -> np.ndarray:
    """(nodes, skus) units not held by an open order."""
    out = np.zeros((shop.net.n, len(skus)), dtype=np.int64)
    col = {s: i for i, s in enumerate(skus)}
    rows = session.execute(
        select(Stock.node_id, Stock.sku, Stock.on_hand - Stock.reserved).where(Stock.sku.in_(skus))
    )
    for node_id, sku, free in rows:
        n = shop.node_index.get(node_id)
        if n is not None:
            out[n, col[sku]] = max(int(free), 0)
    return out


def _wave_loads(session: Session, shop: Shop, since: dt.datetime) -> dict[tuple[int, int], int]:
    rows = session.execute(
        select(WaveLoad.node_id, WaveLoad.wave_at, WaveLoad.parcels).where(
            WaveLoad.wave_at >= since
        )
    )
    out = {}
    for node_id, wave_at, parcels in rows:
        n = shop.node_index.get(node_id)
        if n is not None:
            out[(n, _us(wave_at))] = int(parcels)
    return out


def _batch(shop: Shop, order: OrderIn, placed_us: int, ordered_us: int, skus, qty, stock, used):
    from cadence.models._route_plan import Batch

    city = shop.city[order.city]
    rows = [shop.sku_row[s] for s in skus]
    t = _stamp(placed_us)
    weight = shop.sku_weight[rows] * qty
    volume = shop.sku_volume[rows] * qty
    value = shop.sku_price[rows] * qty
    fragile = shop.sku_fragile[rows]
    promise = shop.net.promise_us(
        np.array([placed_us]), np.array([order.city]), np.array([city.province])
    )
    orders = pd.DataFrame(
        {
            "order_id": [order.order_id],
            "user_id": [""],
            "ordered_us": [ordered_us],
            "dest_lat": [float(city.lat if order.lat is None else order.lat)],
            "dest_lon": [float(city.lon if order.lon is None else order.lon)],
            "dest_tier": [float(city.tier)],
            "dest_city": [order.city],
            "dest_province": [city.province],
            "dest_region_name": [city.region],
            "order_hour": [t.hour + t.minute / 60],
            "weekday": [float(t.weekday())],
            "dest_region": [shop.region_code.get(city.region, -1.0)],
            "promise_us": promise,
            "weight_kg": [weight.sum()],
            "volume_cm3": [volume.sum()],
            "units": [float(qty.sum())],
            "value": [value.sum()],
            "fragile": [float(fragile.any())],
        }
    )
    return Batch(
        orders=orders,
        line_order=np.zeros(len(skus), dtype=np.int64),
        line_sku=np.arange(len(skus), dtype=np.int64),
        line_qty=qty,
        line_weight=weight,
        line_volume=volume,
        line_fragile=fragile,
        line_value=value,
        stock=stock,
        used=used,
    )


def _decide(shop: Shop, order: OrderIn, batch, skus) -> tuple[list[dict], str | None]:
    """The parcels the router chooses (node, carrier, wave, lines, predictions), or the reason
    none can be chosen."""
    from cadence.models._route_eta import windows
    from cadence.models._route_inputs import CARRIERS

    net = shop.net
    if order.delivery == "pickup":
        node = shop.node_index[order.store_id]
        short = [s for i, s in enumerate(skus) if batch.stock[node, i] < batch.line_qty[i]]
        if short:
            return [], f"store {order.store_id} has too few of {', '.join(short[:5])} free"
        wave = int(net.waves_after(np.array([node]), batch.orders.ordered_us.to_numpy(), 1)[0, 0])
        if wave == np.iinfo(np.int64).max:
            return [], f"store {order.store_id} has no picking wave in the next days"
        return [
            {
                "part": 0,
                "node": node,
                "carrier": None,
                "wave_us": wave,
                "lines": list(range(len(skus))),
                "predicted_cost": 0.0,
                "predicted_days": (wave - int(batch.orders.ordered_us.iloc[0])) / DAY_US,
            }
        ], None
    held = (batch.stock >= batch.line_qty[None, :]) & shop.router.allowed_nodes[:, None]
    missing = [s for i, s in enumerate(skus) if not held[:, i].any()]
    if missing:
        return [], f"no node has enough of {', '.join(missing[:5])} free"
    plan = shop.router.plan("greedy", batch, shop.estimate)
    if plan.unassigned:
        # The next waves are full where it is held: look further ahead before refusing.
        plan = shop.patient.plan("greedy", batch, shop.estimate)
    if plan.unassigned:
        return [], "every dispatch wave of the next days is full at the nearest nodes holding it"
    chosen = {
        c: plan.chosen[c].to_numpy()
        for c in ("part", "node", "carrier", "wave_us", "est_cost", "est_days")
    }
    lo, hi = windows(shop.estimate, _parcel_rows(chosen, batch, plan))
    return [
        {
            "part": int(chosen["part"][i]),
            "node": int(chosen["node"][i]),
            "carrier": CARRIERS[int(chosen["carrier"][i])],
            "wave_us": int(chosen["wave_us"][i]),
            "lines": np.flatnonzero(plan.line_parcel == i).tolist(),
            "predicted_cost": float(chosen["est_cost"][i]),
            "predicted_days": float(chosen["est_days"][i]),
            "window_us": (int(lo[i]), int(hi[i])),
        }
        for i in range(lo.size)
    ], None


def _parcel_rows(chosen: dict[str, np.ndarray], batch, plan) -> dict[str, np.ndarray]:
    """The chosen parcels as the models read them: the order's columns with each parcel's own
    contents (a split's parcels carry part of the order), node, carrier and wave."""
    from cadence.models._route_eval import contents_of

    n = chosen["node"].size
    cols = {c: np.repeat(batch.orders[c].to_numpy(), n) for c in batch.orders.columns}
    cols.update(contents_of(batch, plan))
    for c in ("node", "carrier", "wave_us"):
        cols[c] = chosen[c].astype(np.int64)
    return cols


def _take(session: Session, shop: Shop, units, parcels, now: dt.datetime) -> str | None:
    """Reserves `units` [(node_id, sku, q)] and a slot in each of `parcels` [(node_id, wave_at,
    capacity)]; returns what could not be had (the caller rolls back), or None."""
    for node_id, sku, q in sorted(units):
        done = session.execute(
            update(Stock)
            .where(Stock.node_id == node_id, Stock.sku == sku, Stock.on_hand - Stock.reserved >= q)
            .values(reserved=Stock.reserved + q, changed_at=now)
        )
        if done.rowcount != 1:
            return f"{q} of {sku} at {node_id}"
    for node_id, wave_at, capacity in sorted(parcels):
        _ensure_wave(session, node_id, wave_at)
        done = session.execute(
            update(WaveLoad)
            .where(
                WaveLoad.node_id == node_id,
                WaveLoad.wave_at == wave_at,
                WaveLoad.parcels < capacity,
            )
            .values(parcels=WaveLoad.parcels + 1)
        )
        if done.rowcount != 1:
            return f"a slot in {node_id}'s wave at {wave_at:%Y-%m-%d %H:%M}"
    return None


def _capacity(shop: Shop, node: int, wave_us: int) -> int:
    """Parcels the node's wave leaving at `wave_us` takes in all."""
    _, w = shop.net.slot_of(np.array([node]), np.array([wave_us]))
    return int(shop.net.wave_capacity[node, int(w[0])])


def _ensure_wave(session: Session, node_id: str, wave_at: dt.datetime) -> None:
    insert = _insert(session)
    session.execute(
        insert(WaveLoad)
        .values(node_id=node_id, wave_at=wave_at, parcels=0)
        .on_conflict_do_nothing(index_elements=["node_id", "wave_at"])
    )


def _insert(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def route(ctx: Context, shop: Shop, order: OrderIn) -> tuple[dict, bool]:
    """Decides and reserves one order; returns its route and whether it is new. A repeat of an
    order already routed with the same contents returns the first answer."""
    session = ctx.session
    known = session.get(Route, order.order_id)
    if known is not None:
        return _same_or_refuse(known, order), False
    _validate(shop, order)
    ordered = order.ordered_at or ctx.now
    if ordered.tzinfo is None:
        raise ServiceError(422, "invalid_request", "ordered_at: needs a time zone")
    # Promised from when it was placed; routed from now, since no wave leaves in the past.
    placed_us, ordered_us = _us(ordered), max(_us(ordered), _us(ctx.now))
    skus, qty = _merged(order)
    last = ""
    for _ in range(ATTEMPTS):
        stock = _free_stock(session, shop, skus)
        used = _wave_loads(session, shop, ordered - dt.timedelta(days=1))
        batch = _batch(shop, order, placed_us, ordered_us, skus, qty, stock, used)
        parcels, why = _decide(shop, order, batch, skus)
        session.rollback()  # the reads' snapshot ends here; the writes start fresh
        if why is not None:
            raise ServiceError(409, "unservable", f"order {order.order_id}: {why}")
        answer = _answer(shop, order, batch, skus, parcels)
        row = Route(
            order_id=order.order_id,
            delivery=order.delivery,
            state="reserved",
            model_version=shop.model_version if order.delivery == "ship" else "",
            routed_at=ctx.now,
            promised_by=dt.datetime.fromisoformat(answer["promised_by"]),
            changed_at=ctx.now,
            detail={**answer, "request": order.request()},
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # the same order, routed by a request racing this one
            session.rollback()
            return _same_or_refuse(session.get(Route, order.order_id), order), False
        units, slots = [], []
        for p in parcels:
            node_id = str(shop.net.node_id[p["node"]])
            wave_at = _stamp(p["wave_us"])
            slots.append((node_id, wave_at, _capacity(shop, p["node"], p["wave_us"])))
            for i in p["lines"]:
                units.append((node_id, skus[i], int(qty[i])))
                session.add(
                    Reservation(
                        order_id=order.order_id,
                        node_id=node_id,
                        sku=skus[i],
                        quantity=int(qty[i]),
                        wave_at=wave_at,
                    )
                )
        short = _take(session, shop, units, slots, ctx.now)
        if short is None:
            log(
                ctx,
                "order_routed",
                order_id=order.order_id,
                delivery=order.delivery,
                nodes=sorted({u[0] for u in units}),
            )
            session.commit()
            return answer, True
        session.rollback()
        last = short
    raise ServiceError(
        409, "stock_changed", f"order {order.order_id}: {last} went to other orders; try again"
    )


def _same_or_refuse(known: Route, order: OrderIn) -> dict:
    if known.detail.get("request") != order.request():
        raise ServiceError(
            409,
            "already_routed",
            f"order {order.order_id} was routed already with other contents or destination",
        )
    return {**{k: v for k, v in known.detail.items() if k != "request"}, "state": known.state}


def _answer(shop: Shop, order: OrderIn, batch, skus, parcels) -> dict:
    net = shop.net
    # A pickup is promised for when the store has picked it; a shipment as at checkout.
    promise = _stamp(
        parcels[0]["wave_us"]
        if order.delivery == "pickup"
        else int(batch.orders.promise_us.iloc[0])
    )
    out = []
    for p in parcels:
        node = p["node"]
        parcel = {
            "parcel": p["part"],
            "node_id": str(net.node_id[node]),
            "node_kind": ("regional_warehouse", "forward_warehouse", "store")[int(net.kind[node])],
            "carrier": p["carrier"],
            "wave_at": _stamp(p["wave_us"]).isoformat(),
            "skus": [skus[i] for i in p["lines"]],
            "predicted_cost": round(p["predicted_cost"], 4),
            "predicted_days": round(p["predicted_days"], 4),
        }
        if "window_us" in p:
            lo, hi = p["window_us"]
            parcel["window"] = {"from": _stamp(lo).isoformat(), "to": _stamp(hi).isoformat()}
        else:
            parcel["ready_at"] = _stamp(p["wave_us"]).isoformat()
        out.append(parcel)
    return {
        "order_id": order.order_id,
        "delivery": order.delivery,
        "state": "reserved",
        "promised_by": promise.isoformat(),
        "model_version": shop.model_version if order.delivery == "ship" else None,
        "parcels": out,
    }


# --- after the decision ---------------------------------------------------------------------


def release(ctx: Context, order_id: int) -> dict:
    """Gives an order's units and wave slots back (the order was cancelled). Idempotent."""
    return _close(ctx, order_id, "released")


def dispatch(ctx: Context, order_id: int) -> dict:
    """The order's parcels left: its units come off the shelves they were held on."""
    return _close(ctx, order_id, "dispatched")


def _close(ctx: Context, order_id: int, to: str) -> dict:
    session = ctx.session
    done = session.execute(
        update(Route)
        .where(Route.order_id == order_id, Route.state == "reserved")
        .values(state=to, changed_at=ctx.now)
    )
    if done.rowcount != 1:
        session.rollback()
        known = session.get(Route, order_id)
        if known is None:
            raise ServiceError(404, "not_found", f"no routed order {order_id}")
        if known.state != to:
            raise ServiceError(
                409, "conflict", f"order {order_id} is {known.state}; it cannot be {to}"
            )
        return {"order_id": order_id, "state": known.state, "changed": False}
    held = session.scalars(select(Reservation).where(Reservation.order_id == order_id)).all()
    for r in sorted(held, key=lambda r: (r.node_id, r.sku)):
        values: dict[str, Any] = {"reserved": Stock.reserved - r.quantity, "changed_at": ctx.now}
        if to == "dispatched":
            values["on_hand"] = case(
                (Stock.on_hand >= r.quantity, Stock.on_hand - r.quantity), else_=0
            )
        session.execute(
            update(Stock).where(Stock.node_id == r.node_id, Stock.sku == r.sku).values(**values)
        )
    if to == "released":
        for node_id, wave_at in sorted({(r.node_id, r.wave_at) for r in held}):
            session.execute(
                update(WaveLoad)
                .where(
                    WaveLoad.node_id == node_id, WaveLoad.wave_at == wave_at, WaveLoad.parcels > 0
                )
                .values(parcels=WaveLoad.parcels - 1)
            )
    log(ctx, f"route_{to}", order_id=order_id)
    session.commit()
    return {"order_id": order_id, "state": to, "changed": True}


def eta(session: Session, shop_calibration: dict | None, order_id: int) -> dict:
    """The order's arrival windows (or the pickup's ready time), with how often windows like
    these held in the latest replay."""
    known = session.get(Route, order_id)
    if known is None:
        raise ServiceError(404, "not_found", f"no routed order {order_id}")
    d = known.detail
    parcels = [{k: p[k] for k in SHOWN if k in p} for p in d["parcels"]]
    out = {
        "order_id": order_id,
        "state": known.state,
        "delivery": d["delivery"],
        "promised_by": d["promised_by"],
        "parcels": parcels,
    }
    windows = [p["window"] for p in parcels if "window" in p]
    if windows:
        out["window"] = {
            "from": max(w["from"] for w in windows),
            "to": max(w["to"] for w in windows),
        }
        out["calibration"] = shop_calibration
    return out


# --- the shared stock view ------------------------------------------------------------------


def set_stock(ctx: Context, items: list[tuple[str, str, int]]) -> dict:
    """A count from the shop's stock system: on-hand units per (node, SKU), set as given.
    Units open orders hold stay held; rows where the count is below them are named."""
    session = ctx.session
    stmt = _insert(session)(Stock)
    stmt = stmt.on_conflict_do_update(
        index_elements=["node_id", "sku"],
        set_={"on_hand": stmt.excluded.on_hand, "changed_at": stmt.excluded.changed_at},
    )
    rows = [
        {"node_id": n, "sku": s, "on_hand": q, "reserved": 0, "changed_at": ctx.now}
        for n, s, q in sorted(items)
    ]
    for start in range(0, len(rows), 1000):
        session.execute(stmt, rows[start : start + 1000])
    keys = [(n, s) for n, s, _ in items]
    short = []
    if keys:
        nodes = sorted({n for n, _ in keys})
        rows = session.execute(
            select(Stock.node_id, Stock.sku, Stock.on_hand, Stock.reserved).where(
                Stock.node_id.in_(nodes), Stock.reserved > Stock.on_hand
            )
        )
        wanted = set(keys)
        short = [
            {"node_id": n, "sku": s, "on_hand": h, "reserved": r}
            for n, s, h, r in rows
            if (n, s) in wanted
        ]
    log(ctx, "stock_counted", rows=len(items), short=len(short))
    session.commit()
    return {"rows": len(items), "short": short}


def sell(ctx: Context, node_id: str, lines: list[tuple[str, int]]) -> dict:
    """A counter sale at a store: units leave the shelf now, all of them or none."""
    session = ctx.session
    qty: dict[str, int] = {}
    for sku, q in lines:
        qty[sku] = qty.get(sku, 0) + q
    for sku in sorted(qty):
        done = session.execute(
            update(Stock)
            .where(
                Stock.node_id == node_id,
                Stock.sku == sku,
                Stock.on_hand - Stock.reserved >= qty[sku],
            )
            .values(on_hand=Stock.on_hand - qty[sku], changed_at=ctx.now)
        )
        if done.rowcount != 1:
            session.rollback()
            raise ServiceError(
                409, "out_of_stock", f"{node_id} has fewer than {qty[sku]} of {sku} free"
            )
    log(ctx, "stock_sold", node_id=node_id, units=sum(qty.values()))
    session.commit()
    return {"node_id": node_id, "sold": [{"sku": s, "quantity": q} for s, q in sorted(qty.items())]}


def stock_rows(session: Session, node_id: str | None, sku: str | None, limit: int) -> list[dict]:
    q = select(Stock).order_by(Stock.node_id, Stock.sku).limit(limit)
    if node_id is not None:
        q = q.where(Stock.node_id == node_id)
    if sku is not None:
        q = q.where(Stock.sku == sku)
    return [
        {
            "node_id": r.node_id,
            "sku": r.sku,
            "on_hand": r.on_hand,
            "reserved": r.reserved,
            "available": max(r.on_hand - r.reserved, 0),
        }
        for r in session.scalars(q)
    ]
