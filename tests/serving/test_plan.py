"""Consolidation through the service: a ship date's orders from its database, exits checked
again, the plan kept; its invariants read back from SQL on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import select

from cadence.serving._plan import Logistics
from cadence.serving._tables import Confirmation, Order, Parcel, ParcelOrder
from cadence.serving._tariff import Tariff
from tests.serving.conftest import NOW
from tests.serving.test_api import confirm, h, offer

pytestmark = pytest.mark.unit
SHIP = NOW.date() + dt.timedelta(days=2)
ZONES = ("same_city", "same_province", "cross_region", "remote")


def logistics() -> Logistics:
    pairs = [(z, "national") for z in ZONES]
    return Logistics(
        waves=pd.DataFrame(
            {
                "node_id": ["RDC-01"] * 3,
                "wave": [1, 2, 3],
                "cutoff_minute": [540, 900, 1320],
                "capacity": [100, 100, 100],
                "batch_cost": [40.0] * 3,
            }
        ),
        node_kind={"RDC-01": "regional_warehouse"},
        tariff=Tariff(
            divisor=6000.0,
            first=dict(zip(pairs, [5.8, 7.8, 10.8, 16.8], strict=True)),
            next_kg=dict(zip(pairs, [1.0, 2.0, 4.0, 8.0], strict=True)),
            pick={"regional_warehouse": 0.0},
        ),
        transit_days={("same_province", "national"): 1.2, ("remote", "national"): 4.5},
        handover_minutes=90.0,
    )


@pytest.fixture
def planner(service):
    service.logistics = logistics
    return service


def order(
    client,
    keys,
    order_id,
    user,
    *,
    address,
    offer_id=None,
    zone="same_province",
    weight=3.5,
    promised=SHIP + dt.timedelta(days=2),
    fragile=False,
):
    body = {
        "type": "order_placed",
        "event_id": f"place-{order_id}",
        "occurred_at": NOW.isoformat(),
        "order": {
            "order_id": order_id,
            "user_id": user,
            "offer_id": offer_id,
            "address_id": address,
            "area": "C01",
            "node_id": "RDC-01",
            "zone": zone,
            "carrier": "national",
            "distance_km": 120.0,
            "ship_date": str(SHIP),
            "promised_date": str(promised),
            "items": [
                {
                    "sku": "SKU-1",
                    "category": "diapers",
                    "quantity": 1,
                    "unit_price": 25.0,
                    "weight_kg": weight,
                    "volume_cm3": 6000.0,
                    "fragile": fragile,
                }
            ],
        },
    }
    r = client.post("/v1/events", json=body, headers=h(keys))
    assert r.status_code == 200, r.text
    return r.json()


def confirmed(client, keys, order_id, user, **kw):
    o = offer(client, keys, user)["offer"]
    assert confirm(client, keys, o["offer_id"], key=f"idempotency-{user}").status_code == 200
    return order(client, keys, order_id, user, offer_id=o["offer_id"], **kw)


def plan(client, keys):
    r = client.post("/v1/consolidations", json={"ship_date": str(SHIP)}, headers=h(keys))
    assert r.status_code == 201, r.text
    return r.json()


def test_confirmed_orders_of_one_address_ship_as_one_parcel_and_the_rest_alone(
    planner, client, keys
):
    confirmed(client, keys, 1, "u1", address="home-1")
    confirmed(client, keys, 2, "u2", address="home-1")
    order(client, keys, 3, "u3", address="home-1")  # never confirmed: ships alone
    out = plan(client, keys)
    assert out["merged"]["parcels"] == 2 and out["baseline"]["parcels"] == 3
    assert out["merged"]["cost_per_order"] < out["baseline"]["cost_per_order"]
    with planner.sessions() as s:
        rows = s.execute(
            select(ParcelOrder.order_id, Parcel.n_orders)
            .join(
                Parcel,
                (Parcel.plan_id == ParcelOrder.plan_id)
                & (Parcel.parcel_id == ParcelOrder.parcel_id),
            )
            .where(ParcelOrder.plan_id == out["plan_id"])
        ).all()
        assert sorted(o for o, _ in rows) == [1, 2, 3]  # every order in exactly one parcel
        merged = {o for o, n in rows if n > 1}
        assert merged == {1, 2}
        confirmed_orders = set(
            s.scalars(
                select(Order.order_id).join(Confirmation, Confirmation.offer_id == Order.offer_id)
            )
        )
        assert merged <= confirmed_orders  # nothing merged without a confirmation
        assert {s.get(Order, i).state for i in (1, 2)} == {"planned"}
        assert s.get(Order, 3).state == "normal"
    r = client.get(f"/v1/consolidations/{out['plan_id']}", headers=h(keys))
    assert r.status_code == 200 and len(r.json()["parcels"]) == 2


def test_an_exited_order_is_released_and_ships_alone(planner, client, keys):
    confirmed(client, keys, 1, "u1", address="home-1")
    confirmed(client, keys, 2, "u2", address="home-1", fragile=True)  # exits on arrival
    out = plan(client, keys)
    assert out["merged"]["parcels"] == 2
    with planner.sessions() as s:
        assert s.get(Order, 2).state == "released"
        sizes = s.scalars(select(Parcel.n_orders).where(Parcel.plan_id == out["plan_id"])).all()
        assert sorted(sizes) == [1, 1]


def test_a_merge_that_would_miss_the_promised_date_is_released(planner, client, keys):
    # Remote, 4.5 days in transit, promised for the ship date itself: no wave keeps it.
    confirmed(client, keys, 1, "u1", address="far", zone="remote", promised=SHIP)
    confirmed(client, keys, 2, "u2", address="far", zone="remote", promised=SHIP)
    out = plan(client, keys)
    assert {e["reason"] for e in out["exits"]} == {"missed_promise"}
    with planner.sessions() as s:
        assert {s.get(Order, i).reason for i in (1, 2)} == {"missed_promise"}
    kinds = client.get("/v1/users/u1/events", headers=h(keys)).json()
    assert ("merge_exit", "missed_promise") in [(e["kind"], e["reason"]) for e in kinds]


def test_no_parcel_is_over_the_size_limits(planner, client, keys):
    for i, user in enumerate(("u1", "u2", "u3"), start=1):
        confirmed(client, keys, i, user, address="home-1", weight=14.0)
    out = plan(client, keys)
    limit = planner.conf.consolidation.max_weight_kg
    with planner.sessions() as s:
        parcels = s.scalars(select(Parcel).where(Parcel.plan_id == out["plan_id"])).all()
    assert len(parcels) == 2
    assert all(p.billed_kg <= limit for p in parcels)


def test_consolidating_without_logistics_data_says_what_is_missing(service, client, keys):
    from cadence.serving._plan import LogisticsMissing

    def missing():
        raise LogisticsMissing("the data has no shipments table")

    service.logistics = missing
    r = client.post("/v1/consolidations", json={"ship_date": str(SHIP)}, headers=h(keys))
    assert r.status_code == 409 and "shipments" in r.json()["message"]
