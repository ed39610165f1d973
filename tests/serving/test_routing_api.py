"""The service's routing: one order at a time on the model world's network with routing models
fitted on its parcels, the stock view every channel shares, wave capacity from the running
totals, store pickup, arrival windows, and racing clients that never take the same unit twice.
Each runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from cadence.serving._tables import AuditLog, Stock, WaveLoad
from tests.serving.conftest import NOW

pytestmark = pytest.mark.model
RACERS = 8


@pytest.fixture(scope="module")
def shop(model_home: Path, tmp_path_factory):
    from cadence.flows.settings import Settings
    from cadence.flows.steps import routing as step
    from cadence.models._route_models import BoostParams, fit
    from cadence.serving._routing import Shop

    home = tmp_path_factory.mktemp("routing-service")
    (home / "raw").symlink_to(model_home / "raw")
    settings = Settings(home=home, mlflow_tracking_uri=None)
    rc = settings.decisions().routing
    net = step.network(settings, rc)
    frame, targets, train, weather = step.training_data(settings, net, 14)
    features = [c for c in frame.columns if c not in step.NOT_FEATURES]
    stored = fit(
        frame[train],
        targets[train],
        features=features,
        quantiles=(0.1, 0.5, 0.9),
        params=BoostParams(n_estimators=30, n_jobs=1),
    )
    products, cities = step.catalogue(settings.raw_dir)
    return Shop(
        net=net,
        router=step.router_for(rc)(net),
        estimate=step.estimate_for(settings, rc, net, stored, weather),
        model_version="routing v1",
        products=products,
        cities=cities,
        calibration={"inside": 0.8, "nominal": 0.8, "parcels": 10},
    )


@pytest.fixture
def routed(service, shop):
    service.routing = lambda: shop
    return service


@pytest.fixture
def api(routed, keys):
    from fastapi.testclient import TestClient

    from cadence.serving.main import create_app

    with TestClient(create_app(routed)) as c:
        c.headers["X-API-Key"] = keys["service"]
        yield c


def _warehouse_city(shop) -> tuple[str, str]:
    """A city with a regional warehouse, and that warehouse."""
    w = int(np.flatnonzero(shop.net.kind == 0)[0])
    city = str(shop.net.city[w])
    assert city in shop.cities.index
    return city, str(shop.net.node_id[w])


def _store(shop) -> tuple[str, str]:
    s = int(np.flatnonzero(shop.net.kind == 2)[0])
    return str(shop.net.node_id[s]), str(shop.net.city[s])


def _skus(shop, n=2) -> list[str]:
    return [str(s) for s in shop.products.index[:n]]


def _count(api, rows):
    r = api.put(
        "/v1/stock", json={"items": [{"node_id": n, "sku": s, "on_hand": q} for n, s, q in rows]}
    )
    assert r.status_code == 200, r.text
    return r.json()


def _order(order_id, city, lines, **more):
    return {
        "order_id": order_id,
        "destination": {"city": city},
        "lines": [{"sku": s, "quantity": q} for s, q in lines],
        **more,
    }


def _stock(service, node_id, sku):
    with service.sessions() as s:
        row = s.get(Stock, (node_id, sku))
        return (row.on_hand, row.reserved) if row else None


def test_an_order_ships_from_a_node_with_its_units_reserved_and_an_eta(api, routed, shop):
    city, node = _warehouse_city(shop)
    a, b = _skus(shop)
    _count(api, [(node, a, 5), (node, b, 1)])
    body = _order(1, city, [(a, 2), (b, 1), (a, 1)])
    r = api.post("/v1/routes", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["state"] == "reserved" and out["model_version"] == "routing v1"
    (parcel,) = out["parcels"]
    assert parcel["node_id"] == node and sorted(parcel["skus"]) == sorted([a, b])
    window = parcel["window"]
    assert window["from"] < window["to"]
    assert dt.datetime.fromisoformat(window["from"]) > dt.datetime.fromisoformat(parcel["wave_at"])
    # Two lines of one SKU hold three units of it.
    assert _stock(routed, node, a) == (5, 3) and _stock(routed, node, b) == (1, 1)

    again = api.post("/v1/routes", json=body)
    assert again.status_code == 200 and again.json()["parcels"] == out["parcels"]
    other = api.post("/v1/routes", json=_order(1, city, [(a, 1)]))
    assert other.status_code == 409 and other.json()["code"] == "already_routed"

    eta = api.get("/v1/orders/1/eta").json()
    assert eta["window"] == window and eta["calibration"]["inside"] == 0.8
    assert api.get("/v1/orders/2/eta").status_code == 404

    free = api.get("/v1/stock", params={"node_id": node, "sku": a}).json()["rows"]
    assert free == [{"node_id": node, "sku": a, "on_hand": 5, "reserved": 3, "available": 2}]

    # Cancelled: units and the wave's slot go back; a second release changes nothing.
    with routed.sessions() as s:
        load = s.scalar(select(WaveLoad.parcels).where(WaveLoad.node_id == node))
    assert load == 1
    r = api.post("/v1/routes/1/release")
    assert r.json() == {"order_id": 1, "state": "released", "changed": True}
    assert _stock(routed, node, a) == (5, 0)
    with routed.sessions() as s:
        assert s.scalar(select(WaveLoad.parcels).where(WaveLoad.node_id == node)) == 0
        actions = s.scalars(select(AuditLog.action)).all()
    assert api.post("/v1/routes/1/release").json()["changed"] is False
    assert api.post("/v1/routes/1/dispatch").status_code == 409
    assert "order_routed" in actions and "route_released" in actions


def test_dispatch_takes_the_units_off_the_shelf(api, routed, shop):
    city, node = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    _count(api, [(node, a, 4)])
    assert api.post("/v1/routes", json=_order(7, city, [(a, 3)])).status_code == 201
    assert api.post("/v1/routes/7/dispatch").json()["state"] == "dispatched"
    assert _stock(routed, node, a) == (1, 0)
    assert api.post("/v1/routes/7/release").status_code == 409


def test_no_free_stock_anywhere_is_refused_with_the_sku_named(api, shop):
    city, node = _warehouse_city(shop)
    a, b = _skus(shop)
    _count(api, [(node, a, 1)])
    before = _refused(api)
    r = api.post("/v1/routes", json=_order(3, city, [(a, 2)]))
    assert r.status_code == 409 and a in r.json()["message"]
    r = api.post("/v1/routes", json=_order(3, city, [(b, 1)]))
    assert r.status_code == 409 and b in r.json()["message"]
    assert _refused(api) == before + 2


def _refused(api) -> float:
    """The metrics' count of shipments refused as unservable (a process may hold counts of
    earlier apps: Prometheus' multiprocess mode keeps them by name)."""
    line = 'cadence_routes_total{delivery="ship",outcome="unservable"} '
    found = [m for m in api.get("/metrics").text.splitlines() if m.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_bad_orders_name_what_is_wrong(api, shop):
    city, _ = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    r = api.post("/v1/routes", json=_order(4, "Atlantis", [(a, 1)]))
    assert r.status_code == 422 and "destination.city" in r.json()["message"]
    r = api.post("/v1/routes", json=_order(4, city, [("no-such-sku", 1)]))
    assert r.status_code == 422 and "no-such-sku" in r.json()["message"]
    r = api.post("/v1/routes", json=_order(4, city, [(a, 1)], delivery="pickup"))
    assert r.status_code == 422 and "store_id" in r.json()["message"]
    r = api.post("/v1/routes", json=_order(4, city, [(a, 1)], delivery="pickup", store_id="X9"))
    assert r.status_code == 422 and "X9" in r.json()["message"]
    late = (NOW + dt.timedelta(days=3)).isoformat()
    r = api.post("/v1/routes", json=_order(4, city, [(a, 1)], ordered_at=late))
    assert r.status_code == 422 and "ordered_at" in r.json()["message"]
    assert api.post("/v1/routes", json=_order(4, city, [(a, 0)])).status_code == 422


def test_store_pickup_holds_the_units_at_the_chosen_store(api, routed, shop):
    store, city = _store(shop)
    a, b = _skus(shop)
    _count(api, [(store, a, 2)])
    r = api.post("/v1/routes", json=_order(5, city, [(a, 2)], delivery="pickup", store_id=store))
    assert r.status_code == 201, r.text
    (parcel,) = r.json()["parcels"]
    assert parcel["node_id"] == store and parcel["node_kind"] == "store"
    assert parcel["carrier"] is None and r.json()["promised_by"] == parcel["ready_at"]
    assert dt.datetime.fromisoformat(parcel["ready_at"]) > NOW
    assert _stock(routed, store, a) == (2, 2)
    r = api.post("/v1/routes", json=_order(6, city, [(b, 1)], delivery="pickup", store_id=store))
    assert r.status_code == 409 and b in r.json()["message"]
    eta = api.get("/v1/orders/5/eta").json()
    assert eta["delivery"] == "pickup" and "window" not in eta


def test_a_counter_sale_and_an_online_order_share_the_shelf(api, routed, shop):
    store, city = _store(shop)
    (a,) = _skus(shop, 1)
    _count(api, [(store, a, 2)])
    r = api.post("/v1/routes", json=_order(8, city, [(a, 1)], delivery="pickup", store_id=store))
    assert r.status_code == 201
    sale = {"node_id": store, "lines": [{"sku": a, "quantity": 2}]}
    r = api.post("/v1/stock/sales", json=sale)
    assert r.status_code == 409 and r.json()["code"] == "out_of_stock"
    sale["lines"][0]["quantity"] = 1
    assert api.post("/v1/stock/sales", json=sale).status_code == 200
    assert _stock(routed, store, a) == (1, 1)
    # A new count below what orders hold is kept, and named.
    out = _count(api, [(store, a, 0)])
    assert out["short"] == [{"node_id": store, "sku": a, "on_hand": 0, "reserved": 1}]


def test_a_full_wave_sends_the_order_to_a_later_wave(api, routed, shop):
    city, node = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    _count(api, [(node, a, 10)])
    first = api.post("/v1/routes", json=_order(10, city, [(a, 1)])).json()["parcels"][0]
    wave_at = dt.datetime.fromisoformat(first["wave_at"])
    api.post("/v1/routes/10/release")
    # The day's running total says that wave is full.
    with routed.sessions() as s:
        row = s.get(WaveLoad, (node, wave_at))
        row.parcels = 10**6
        s.commit()
    second = api.post("/v1/routes", json=_order(11, city, [(a, 1)])).json()["parcels"][0]
    assert second["node_id"] == node and second["wave_at"] > first["wave_at"]


def test_racing_orders_never_take_the_same_unit(routed, shop):
    """Eight clients at once, each on its own connection, for three units in the whole
    network: three orders are routed, five refused, and three units are held."""
    from cadence.serving._records import Context, ServiceError
    from cadence.serving._routing import Line, OrderIn, route, set_stock

    city, node = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    with routed.sessions() as s:
        set_stock(Context(s, "t", NOW, routed.conf, None), [(node, a, 3)])

    def run(i):
        with routed.sessions() as session:
            ctx = Context(session, f"k{i}", NOW, routed.conf, None)
            order = OrderIn(order_id=100 + i, city=city, lines=(Line(a, 1),))
            try:
                with routed.writes():
                    return route(ctx, shop, order)[0]["parcels"][0]["node_id"]
            except ServiceError as exc:
                return exc.code

    with ThreadPoolExecutor(RACERS) as pool:
        got = list(pool.map(run, range(RACERS)))
    assert got.count(node) == 3, got
    assert all(g == node or g in ("unservable", "stock_changed") for g in got), got
    assert _stock(routed, node, a) == (3, 3)


def test_racing_sales_and_orders_never_oversell(routed, shop):
    from cadence.serving._records import Context, ServiceError
    from cadence.serving._routing import Line, OrderIn, route, sell, set_stock

    store, city = _store(shop)
    (a,) = _skus(shop, 1)
    with routed.sessions() as s:
        set_stock(Context(s, "t", NOW, routed.conf, None), [(store, a, 3)])

    def run(i):
        with routed.sessions() as session:
            ctx = Context(session, f"k{i}", NOW, routed.conf, None)
            try:
                with routed.writes():
                    if i % 2:
                        sell(ctx, store, [(a, 1)])
                        return "sold"
                    order = OrderIn(
                        order_id=200 + i,
                        city=city,
                        lines=(Line(a, 1),),
                        delivery="pickup",
                        store_id=store,
                    )
                    route(ctx, shop, order)
                    return "held"
            except ServiceError as exc:
                return exc.code

    with ThreadPoolExecutor(RACERS) as pool:
        got = list(pool.map(run, range(RACERS)))
    on_hand, reserved = _stock(routed, store, a)
    sold = got.count("sold")
    assert sold + got.count("held") == 3, got
    assert on_hand == 3 - sold and reserved == got.count("held")


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_generated_routing_requests_never_get_a_server_error(routed, keys, shop):
    """Schemathesis on the routing and stock operations, with a routing model behind them."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    from cadence.serving._records import Context
    from cadence.serving._routing import set_stock
    from cadence.serving.main import create_app

    city, node = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    with routed.sessions() as s:
        set_stock(Context(s, "t", NOW, routed.conf, None), [(node, a, 50)])
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(routed))
    failures, seen = [], {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(("/v1/routes", "/v1/orders", "/v1/stock")):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.headers = {**(case.headers or {}), "X-API-Key": keys["service"]}
            response = case.call()
            seen[case.path] = seen.get(case.path, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.text[:300]}")

        run()
    assert len(seen) >= 6, seen
    assert not failures, "\n".join(failures[:10])


def test_an_order_placed_hours_ago_leaves_with_a_wave_still_to_come(api, shop):
    city, node = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    _count(api, [(node, a, 3)])
    placed = NOW - dt.timedelta(hours=20)
    r = api.post("/v1/routes", json=_order(12, city, [(a, 1)], ordered_at=placed.isoformat()))
    assert r.status_code == 201, r.text
    out = r.json()
    assert dt.datetime.fromisoformat(out["parcels"][0]["wave_at"]) > NOW
    # The promise counts from when it was placed: a day earlier than an order placed now.
    now = api.post("/v1/routes", json=_order(13, city, [(a, 1)])).json()
    assert out["promised_by"] < now["promised_by"]


def test_full_waves_push_the_order_days_ahead_until_none_is_left(api, routed, shop):
    """Capacity comes from the day's running totals: with the node's next three waves full
    the order leaves with the fourth; with every wave of the next days full, it is refused."""
    city, node = _warehouse_city(shop)
    (a,) = _skus(shop, 1)
    _count(api, [(node, a, 10)])
    n = shop.node_index[node]
    now_us = int(NOW.timestamp() * 1e6)
    waves = shop.net.waves_after(np.array([n]), np.array([now_us]), 30)[0]
    waves = [w for w in waves.tolist() if w < np.iinfo(np.int64).max]
    assert len(waves) > 4

    def fill(k):
        with routed.sessions() as s:
            for w in waves[:k]:
                at = dt.datetime.fromtimestamp(w / 1e6, tz=dt.UTC)
                s.merge(WaveLoad(node_id=node, wave_at=at, parcels=10**6))
            s.commit()

    fill(3)
    r = api.post("/v1/routes", json=_order(20, city, [(a, 1)]))
    assert r.status_code == 201, r.text
    at = dt.datetime.fromisoformat(r.json()["parcels"][0]["wave_at"])
    assert int(at.timestamp() * 1e6) == waves[3]
    fill(len(waves))
    r = api.post("/v1/routes", json=_order(21, city, [(a, 1)]))
    assert r.status_code == 409 and "every dispatch wave" in r.json()["message"]
