"""Benchmark: routing against its speed targets (2 cores): 100,000 orders planned across all
nodes in under 30 s, model inference included; one order decided with p99 under 20 ms; and the
service's own path for one order (database reads, decision, window, reservation, commit).

Generates a simulated shop (no feature build: the models read no node features here), trains
the routing models on its parcels before the last two weeks, then builds one day of 100,000
orders by drawing the held-out orders again (new ids, the same destinations and baskets, times
spread over the day), with every node's stock and every wave's capacity scaled up by the same
factor so the day is as tight as an ordinary one. Times `greedy` and `optimal` on it (candidates,
inference, solver), checks the plans (no stock or capacity violation), and prints them beside
`nearest`. Then decides single orders of the held-out days one at a time (`greedy` on a
one-order batch, the decision the service makes) and prints the latency percentiles. Last, the
service's own path: the day's stock loaded into its database, half of `--service-orders` routed
one at a time (reads, decision, arrival window, reservation, commit), the other half by eight
clients at once, and the database checked afterwards (no row holds more than it has; the units
reserved are the units the routed orders hold).

    python bench/bench_routing.py                  # 100,000 orders
    python bench/bench_routing.py --orders 20000 --single 200
    python bench/bench_routing.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=1000, help="single-order decisions to time")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=240)
    ap.add_argument(
        "--service-orders", type=int, default=1000, help="orders routed through the service"
    )
    ap.add_argument(
        "--postgres",
        default=None,
        help="a PostgreSQL URL (postgresql+psycopg://...) for the service's database; "
        "default: a SQLite file",
    )
    args = ap.parse_args()

    from cadence.flows.settings import Settings
    from cadence.flows.steps import routing as step
    from cadence.flows.steps.world import generate
    from cadence.models._route_eval import batch_for, stock_reader
    from cadence.models._route_models import BoostParams, fit
    from cadence.models._route_plan import Batch, model_estimate
    from cadence.world import WorldConfig

    home = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    t0 = time.perf_counter()
    cfg = WorldConfig(users=args.users, days=args.days, seed=3, start=dt.date(2025, 1, 1))
    generate(cfg, home / "raw", home / "truth")
    settings = Settings(home=home, mlflow_tracking_uri=None)
    conf = settings.decisions()
    rc = conf.routing.model_copy(update={"holdout_days": 14})
    net = step.network(settings, rc)
    frame, targets, train, weather = step.training_data(settings, net, 14)
    features = [c for c in frame.columns if c not in step.NOT_FEATURES]
    m = rc.models
    stored = fit(
        frame[train],
        targets[train],
        features=features,
        quantiles=tuple(m.quantiles),
        params=BoostParams(m.n_estimators, m.learning_rate, m.max_depth, m.early_stopping_rounds),
    )
    print(
        f"world {args.users:,} shoppers x {args.days} days, models on {int(train.sum()):,} "
        f"parcels: {time.perf_counter() - t0:.0f} s (not timed below)"
    )

    orders = pd.read_parquet(settings.raw_dir / "orders.parquet")
    first = step.holdout_start(settings, 14)
    held = orders[(orders.ordered_at >= first) & (orders.channel.fillna("") != "store")]
    held = held.reset_index(drop=True)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(held), args.orders)
    day = first.floor("D")
    big = held.iloc[pick].reset_index(drop=True).copy()
    big["order_id"] = np.arange(10**9, 10**9 + args.orders)
    seconds = rng.uniform(0, 86_400, args.orders)
    big["ordered_at"] = day + pd.to_timedelta(np.sort(seconds), unit="s")
    # Lines: the drawn orders' own lines, under the new ids (a parquet of them for batch_for).
    from cadence.models._route_inputs import order_lines

    lines = order_lines(settings.raw_dir, held.order_id.to_numpy())
    scale = args.orders / max(len(held) / 14, 1)
    stock0 = stock_reader(settings.raw_dir, net)(day.date())
    stock = np.ceil(stock0 * scale).astype(np.int64)
    wide = replace(net, wave_capacity=np.ceil(net.wave_capacity * scale).astype(np.int64))
    tmp_raw = home / "bench-raw"
    tmp_raw.mkdir()
    for name in ("users", "products", "address_changes"):
        (tmp_raw / f"{name}.parquet").symlink_to(settings.raw_dir / f"{name}.parquet")
    ids = pd.DataFrame({"new_id": big.order_id, "old_id": held.order_id.to_numpy()[pick]})
    items = lines.merge(ids, left_on="order_id", right_on="old_id")
    items["order_id"] = items.new_id
    items[
        ["order_id", "line", "sku", "quantity", "unit_price", "shipment_id", "cancelled"]
    ].to_parquet(tmp_raw / "order_items.parquet")
    batch = batch_for(tmp_raw, wide, big, stock)
    print(
        f"day of {len(big):,} orders, {batch.line_order.size:,} lines; "
        f"stock and capacity x{scale:.0f}"
    )

    router = step.router_for(rc)(wide)
    estimate = model_estimate(
        stored, wide, weather, None, wide.damage_refund_share, rc.objective.damage_weight
    )
    truth = step.truth_for(settings, wide)
    from cadence.models._route_eval import order_outcomes

    results = {}
    for strategy in ("nearest", "greedy", "optimal"):
        t = time.perf_counter()
        plan = router.plan(strategy, Batch(**{**batch.__dict__, "used": {}}), estimate, truth)
        took = time.perf_counter() - t
        out = order_outcomes(batch, plan, truth)
        results[strategy] = out
        print(
            f"{strategy:>8}: {took:6.1f} s  orders planned {int(out.assigned.sum()):,}, "
            f"unassigned {len(plan.unassigned):,}; stock violations {plan.stock_violations}, "
            f"capacity violations {plan.capacity_violations}; solver {plan.method or '-'}"
            + (f", gap {plan.gap:.2e}" if plan.gap is not None else "")
            + f"; true cost per order {out.cost[out.assigned].mean():.3f}, next day "
            f"{out.next_day[out.assigned].mean():.1%}"
        )
    print("target: optimal under 30 s on 2 cores (os.cpu_count() =", os.cpu_count(), ")")

    # Single decisions: one order at a time, the day's running capacity carried.
    sample = rng.choice(len(big), min(args.single, len(big)), replace=False)
    used: dict = {}
    times = []
    for r in sample:
        lines_r = np.flatnonzero(batch.line_order == r)
        one = Batch(
            orders=batch.orders.iloc[[r]].reset_index(drop=True),
            line_order=np.zeros(lines_r.size, dtype=np.int64),
            line_sku=batch.line_sku[lines_r],
            line_qty=batch.line_qty[lines_r],
            line_weight=batch.line_weight[lines_r],
            line_volume=batch.line_volume[lines_r],
            line_fragile=batch.line_fragile[lines_r],
            line_value=batch.line_value[lines_r],
            stock=stock,
            used=used,
        )
        t = time.perf_counter()
        plan = router.plan("greedy", one, estimate)
        router.commit(one, plan)
        times.append((time.perf_counter() - t) * 1000)
    q = np.percentile(times, [50, 95, 99])
    print(
        f"single-order decisions: {len(times):,}; p50 {q[0]:.1f} ms, p95 {q[1]:.1f} ms, "
        f"p99 {q[2]:.1f} ms (target: p99 under 20 ms)"
    )

    service_path(args, settings, step, wide, router, estimate, batch, stock, home)


def service_path(args, settings, step, net, router, estimate, batch, stock, home) -> None:
    """The service's own path for single orders (`serving._routing.route`): the stock free
    and the waves' loads read from the database, the decision, the arrival window, the
    reservation by conditional updates and the commit. Timed one at a time, then eight
    clients at once; afterwards no stock row may hold more than it has."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from cadence.serving._config import ServingConf
    from cadence.serving._db import engine_for, migrate, sessions
    from cadence.serving._records import Context, ServiceError
    from cadence.serving._routing import Line, OrderIn, Shop, route, set_stock
    from cadence.serving._tables import Reservation, Stock

    products, cities = step.catalogue(settings.raw_dir)
    shop = Shop(net, router, estimate, "bench", products, cities)
    made = None
    if args.postgres:  # a new database on that server, dropped at the end
        from sqlalchemy import create_engine, text

        made = f"cadence_bench_{os.getpid()}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {made}"))
        url = args.postgres.rsplit("/", 1)[0] + f"/{made}"
    else:
        url = f"sqlite:///{home / 'serving.db'}"
    engine = engine_for(url, pool_size=10)
    migrate(engine)
    factory = sessions(engine)
    skus = products.index.to_numpy()
    node, sku = np.nonzero(stock)
    with factory() as session:
        now = dt.datetime.now(dt.UTC)
        items = [
            (str(net.node_id[n]), str(skus[k]), int(stock[n, k]))
            for n, k in zip(node, sku, strict=True)
        ]
        set_stock(Context(session, "bench", now, ServingConf(), None), items)
    o = batch.orders
    todo = []
    rows = np.sort(np.random.default_rng(1).choice(len(o), args.service_orders, replace=False))
    for i, r in enumerate(rows):
        ls = np.flatnonzero(batch.line_order == r)
        lines = tuple(Line(str(skus[batch.line_sku[j]]), int(batch.line_qty[j])) for j in ls)
        at = dt.datetime.fromtimestamp(o.ordered_us.iloc[r] / 1e6, tz=dt.UTC)
        todo.append((at, OrderIn(order_id=i + 1, city=str(o.dest_city.iloc[r]), lines=lines)))
    lock = __import__("threading").Lock() if engine.dialect.name == "sqlite" else None

    def one(item):
        at, order = item
        with factory() as session:
            t = time.perf_counter()
            try:
                if lock is None:
                    route(Context(session, "bench", at, ServingConf(), None), shop, order)
                else:
                    with lock:  # SQLite has one writer: the service queues its writes too
                        route(Context(session, "bench", at, ServingConf(), None), shop, order)
                code = "routed"
            except ServiceError as exc:
                code = exc.code
            return (time.perf_counter() - t) * 1000, code

    half = len(todo) // 2
    timed = [one(item) for item in todo[:half]]
    q = np.percentile([t for t, _ in timed[1:]], [50, 95, 99])
    codes = pd.Series([c for _, c in timed]).value_counts().to_dict()
    print(
        f"service path ({engine.dialect.name}): {half:,} orders one at a time, {codes}; "
        f"p50 {q[0]:.1f} ms, p95 {q[1]:.1f} ms, p99 {q[2]:.1f} ms "
        "(decision, window, reservation and commit; no HTTP)"
    )
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        raced = list(pool.map(one, todo[half:]))
    took = time.perf_counter() - t
    codes = pd.Series([c for _, c in raced]).value_counts().to_dict()
    with factory() as session:
        over = session.scalar(
            select(func.count()).select_from(Stock).where(Stock.reserved > Stock.on_hand)
        )
        held = session.scalar(select(func.sum(Reservation.quantity)))
        reserved = session.scalar(select(func.sum(Stock.reserved)))
    print(
        f"service path, 8 clients at once: {len(raced):,} orders in {took:.1f} s "
        f"({len(raced) / took:.0f} orders/s), {codes}; rows holding more than on hand: {over}; "
        f"units reserved {reserved:,} = units the routed orders hold {held:,}"
    )
    engine.dispose()
    if made is not None:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE {made} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
