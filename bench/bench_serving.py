"""The merge service under load, and killed mid-load.

1. Latency: `GET /v1/users/{id}/offer` at fixed rates (default 50, 100 and 200 requests per
   second), open loop: each request leaves on its schedule whatever the answers before it
   (asyncio and httpx over keep-alive connections), so a slow answer cannot hold back the
   ones after it and hide itself. Its p50 and p99.
2. Reliability: many clients (default 500) for some minutes (default 2), each asking for
   offers, confirming them (with an Idempotency-Key, sometimes retried, sometimes with a second
   key), cancelling some and sending events (orders placed for confirmed offers, failed
   payments, replayed events). Midway the server is killed with SIGKILL and started again.
   Each client keeps its own record of what the server acknowledged (a 2xx).
3. The check: every acknowledged confirmation is in the database exactly once, with the key
   that made it; every acknowledged cancellation holds; every acknowledged event is stored
   once; and the day's consolidation puts every order in exactly one parcel, merging only
   confirmed orders.

The service runs as `cadence serve` in its own process, on a workspace this script builds:
a synthetic scored list of `--users` shoppers published to the online store (SQLite, or Redis
with `--online-store redis://...`), and the database (SQLite in WAL mode, or a new PostgreSQL
database with `--postgres`). The load runs in a child process (Locust patches the standard
library with gevent, which the rest of this script must not see).

    python bench/bench_serving.py                       # SQLite + SQLite online store
    python bench/bench_serving.py --postgres --online-store redis://127.0.0.1:6379/14
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

AS_OF = dt.date(2026, 3, 1)
PG = "postgresql://postgres@127.0.0.1:5432"


def prepare(home: Path, users: int, online_store: str) -> None:
    """A workspace whose online store holds `users` eligible shoppers' scores."""
    import numpy as np
    import pandas as pd

    from cadence.features._store import open_store, publish_scores

    rng = np.random.default_rng(0)
    as_of = pd.Timestamp(AS_OF, tz="UTC")
    folder = home / "lists" / "repurchase" / "latest"
    folder.mkdir(parents=True)
    n = users
    pd.DataFrame(
        {
            "user_id": [f"U{i:07d}" for i in range(n)],
            "p_order_30d": rng.uniform(0.35, 0.95, n),
            "percentile": rng.integers(1, 101, n),
            "band": "high",
            "contact_date": as_of + pd.Timedelta(days=2),
            "expected_next_order_date": as_of + pd.to_timedelta(rng.integers(2, 10, n), "D"),
            "driver_1": "a",
            "driver_2": "b",
            "driver_3": "c",
            "model_version": "1",
            "as_of": as_of,
        }
    ).to_parquet(folder / "scores.parquet")
    # The shop's logistics, for consolidation: four warehouses with three waves each, and a
    # priced shipment history to learn the tariff and transit times from.
    raw = home / "raw"
    raw.mkdir()
    nodes = [f"N{i}" for i in range(4)]
    pd.DataFrame({"node_id": nodes, "kind": "regional_warehouse"}).to_parquet(raw / "nodes.parquet")
    pd.DataFrame(
        {
            "node_id": np.repeat(nodes, 3),
            "wave": np.tile([1, 2, 3], 4),
            "cutoff_minute": np.tile([540, 900, 1320], 4),
            "capacity": 100_000,
            "batch_cost": 40.0,
        }
    ).to_parquet(raw / "dispatch_waves.parquet")
    k = 2000
    weight = rng.uniform(0.2, 12, k)
    volume = rng.uniform(500, 60_000, k)
    billed = np.maximum(weight, volume / 6000)
    extra = np.ceil(np.maximum(billed - 1, 0) - 1e-9)
    shipped = as_of - pd.to_timedelta(rng.integers(1, 60, k), "D")
    pd.DataFrame(
        {
            "zone": "same_province",
            "carrier": "national",
            "node_id": rng.choice(nodes, k),
            "actual_weight_kg": weight,
            "volume_cm3": volume,
            "billed_weight_kg": billed,
            "cost": np.round(7.0 + 2.0 * extra + 0.8, 2),
            "wave_at": shipped,
            "shipped_at": shipped + pd.Timedelta(hours=1.5),
            "delivered_at": shipped + pd.to_timedelta(rng.uniform(0.5, 1.5, k), "D"),
        }
    ).to_parquet(raw / "shipments.parquet")
    (home / "feast").mkdir()
    if online_store.startswith("redis://"):
        import redis

        redis.Redis.from_url(online_store).flushdb()
    publish_scores(open_store(home / "feast", online_store), home / "lists", "repurchase")


def cadence(*args: str, env: dict) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("cadence")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, check=True)


class Server:
    def __init__(self, env: dict, port: int, log: Path, workers: int = 1) -> None:
        self.env, self.port, self.log, self.workers = env, port, log, workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        import urllib.request

        exe = Path(sys.executable).with_name("cadence")
        started = time.perf_counter()
        args = [str(exe), "serve", "--port", str(self.port), "--today", AS_OF.isoformat()]
        args += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT
        )
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited; see {self.log}") from None
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the server and every worker process it started."""
        assert self.proc is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        self.proc.send_signal(signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def load(args) -> None:
    """The child: Locust as a library, the clients' acknowledged record to `args.record`."""
    import gevent
    from locust import FastHttpUser, between, events, task
    from locust.env import Environment

    key, users = args.key, args.users
    acked: dict[str, list] = {"confirm": [], "cancel": [], "event": [], "order": []}
    host = f"http://127.0.0.1:{args.port}"

    class Shopper(FastHttpUser):
        wait_time = between(0.2, 1.0)
        default_headers = {"X-API-Key": key}

        def on_start(self):
            self.rng = __import__("random").Random()

        def _user(self):
            return f"U{self.rng.randrange(users):07d}"

        @task
        def work(self):
            user = self._user()
            with self.client.get(
                f"/v1/users/{user}/offer", name="/v1/users/[id]/offer", catch_response=True
            ) as r:
                if r.status_code != 200:
                    r.failure(f"{r.status_code}")
                    return
                offer = r.json().get("offer")
            if offer is None or offer["state"] != "open":
                return
            self._confirm_and_more(user, offer["offer_id"])

        def _confirm_and_more(self, user, offer_id):
            idem = uuid.uuid4().hex
            body = {"channel": "app", "consent_version": "2026-11"}
            ok = None
            for _attempt in range(2 if self.rng.random() < 0.3 else 1):  # retried sometimes
                with self.client.post(
                    f"/v1/offers/{offer_id}/confirm",
                    json=body,
                    headers={"Idempotency-Key": idem},
                    name="/v1/offers/[id]/confirm",
                    catch_response=True,
                ) as r:
                    if r.status_code == 200:
                        ok = r.json()
                        r.success()
                    elif r.status_code in (409, 422):
                        r.success()
                    else:
                        r.failure(str(r.status_code))
            if ok is None:
                return
            acked["confirm"].append([offer_id, idem])
            if self.rng.random() < 0.2:
                with self.client.post(
                    f"/v1/offers/{offer_id}/cancel",
                    json={"channel": "app"},
                    name="/v1/offers/[id]/cancel",
                    catch_response=True,
                ) as r:
                    if r.status_code == 200:
                        acked["cancel"].append(offer_id)
                    elif r.status_code == 409:
                        r.success()
                return
            order_id = self.rng.randrange(1, 2**62)
            event = {
                "type": "order_placed",
                "event_id": uuid.uuid4().hex,
                "occurred_at": f"{AS_OF}T10:00:00+00:00",
                "order": {
                    "order_id": order_id,
                    "user_id": user,
                    "offer_id": offer_id,
                    "address_id": f"A{int(user[1:]) // 2}",  # households of two
                    "area": f"C{int(user[1:]) % 40:02d}",
                    "node_id": f"N{int(user[1:]) % 4}",
                    "zone": "same_province",
                    "carrier": "national",
                    "distance_km": 80.0,
                    "ship_date": str(AS_OF + dt.timedelta(days=1)),
                    "promised_date": str(AS_OF + dt.timedelta(days=4)),
                    "items": [
                        {
                            "sku": "SKU-1",
                            "category": None,
                            "quantity": 1,
                            "unit_price": 30.0,
                            "weight_kg": 1.2,
                            "volume_cm3": 3000.0,
                        }
                    ],
                },
            }
            self._event(event, order_id)
            if self.rng.random() < 0.1:
                failed = {
                    "type": "payment_failed",
                    "event_id": uuid.uuid4().hex,
                    "occurred_at": f"{AS_OF}T10:05:00+00:00",
                    "order_id": order_id,
                }
                self._event(failed, None)
                if self.rng.random() < 0.5:
                    self._event(failed, None)  # a replay

        def _event(self, event, order_id):
            with self.client.post(
                "/v1/events", json=event, name="/v1/events", catch_response=True
            ) as r:
                if r.status_code == 200:
                    acked["event"].append(event["event_id"])
                    if order_id is not None:
                        acked["order"].append(order_id)
                elif r.status_code in (404, 409):
                    r.success()

    env = Environment(user_classes=[Shopper], host=host, events=events)
    runner = env.create_local_runner()
    runner.start(args.clients, spawn_rate=max(args.clients / 5, 1))
    gevent.sleep(args.seconds)
    runner.quit()
    stats = env.stats
    out = {
        "requests": stats.total.num_requests,
        "failures": stats.total.num_failures,
        "rps": stats.total.total_rps,
        "by_name": {
            f"{e.method} {e.name}": {
                "n": e.num_requests,
                "failures": e.num_failures,
                "p50_ms": e.get_response_time_percentile(0.5),
                "p99_ms": e.get_response_time_percentile(0.99),
            }
            for e in stats.entries.values()
        },
        "errors": {str(e.error)[:200]: e.occurrences for e in stats.errors.values()},
        "acked": acked,
    }
    Path(args.record).write_text(json.dumps(out))


def fixed_rate(port: int, key: str, users: int, rate: int, seconds: float) -> dict:
    """GET offer for random shoppers at `rate` per second, open loop; latencies in ms."""
    import asyncio
    import random

    import httpx2 as httpx
    import numpy as np

    async def main() -> dict:
        done: list[tuple[float, bool]] = []
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"X-API-Key": key},
            limits=limits,
            timeout=30,
        ) as client:

            async def one(user: int) -> None:
                started = time.perf_counter()
                try:
                    r = await client.get(f"/v1/users/U{user:07d}/offer")
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                done.append((time.perf_counter() - started, ok))

            rng = random.Random(rate)
            start = time.perf_counter()
            tasks = []
            for i in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(rng.randrange(users))))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
        ms = np.array([d for d, _ in done]) * 1000
        return {
            "n": len(done),
            "failed": sum(1 for _, ok in done if not ok),
            "rps": len(done) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
        }

    return asyncio.run(main())


def run_load(*, port, key, users, clients, seconds, record: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            "--port",
            str(port),
            "--key",
            key,
            "--users",
            str(users),
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
            "--record",
            str(record),
        ]
    )


def check(url: str, record: dict, planned: dict) -> dict:
    """The database against the clients' record of what was acknowledged."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as c:
        rows = c.execute(text("SELECT offer_id, idempotency_key FROM confirmations")).all()
        events = {r[0] for r in c.execute(text("SELECT event_id FROM events"))}
        states = dict(c.execute(text("SELECT offer_id, state FROM offers")).all())
        plan = planned["plan_id"]
        placed = c.execute(
            text("SELECT order_id, count(*) FROM parcel_orders WHERE plan_id = :p GROUP BY 1"),
            {"p": plan},
        ).all()
        merged_unconfirmed = c.execute(
            text(
                "SELECT count(*) FROM parcel_orders po JOIN parcels p ON p.plan_id = po.plan_id"
                " AND p.parcel_id = po.parcel_id JOIN orders o ON o.order_id = po.order_id"
                " LEFT JOIN confirmations k ON k.offer_id = o.offer_id"
                " WHERE po.plan_id = :p AND p.n_orders > 1 AND k.offer_id IS NULL"
            ),
            {"p": plan},
        ).scalar()
        day_orders = c.execute(
            text("SELECT count(*) FROM orders WHERE ship_date = :d AND state <> 'cancelled'"),
            {"d": AS_OF + dt.timedelta(days=1)},
        ).scalar()
    engine.dispose()
    stored: dict[str, list[str]] = {}
    for offer_id, key in rows:
        stored.setdefault(offer_id, []).append(key)
    acked = record["acked"]
    keys_for: dict[str, set[str]] = {}
    for offer_id, key in acked["confirm"]:
        keys_for.setdefault(offer_id, set()).add(key)
    lost = [o for o in keys_for if o not in stored]
    doubled = [o for o, ks in stored.items() if len(ks) != 1]
    wrong_key = [o for o, ks in keys_for.items() if o in stored and stored[o][0] not in ks]
    cancels_lost = [o for o in set(acked["cancel"]) if states.get(o) != "cancelled"]
    events_lost = [e for e in set(acked["event"]) if e not in events]
    return {
        "acknowledged confirmations": len(keys_for),
        "lost": len(lost),
        "stored more than once": len(doubled),
        "stored with another client's key": len(wrong_key),
        "acknowledged cancellations": len(set(acked["cancel"])),
        "cancellations lost": len(cancels_lost),
        "acknowledged events": len(set(acked["event"])),
        "events lost": len(events_lost),
        "orders of the ship date": day_orders,
        "orders planned": len(placed),
        "orders in more than one parcel": sum(1 for _, n in placed if n != 1),
        "merged without confirmation": merged_unconfirmed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument(
        "--rates",
        default="50,100,200",
        help="request rates to measure GET offer at, comma-separated",
    )
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--postgres", action="store_true", help="a new PostgreSQL database")
    parser.add_argument("--online-store", default="sqlite")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        load(args)
        return

    home = Path(tempfile.mkdtemp(prefix="cadence-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_HOME=str(home), CADENCE_ONLINE_STORE=args.online_store)
    database = None
    if args.postgres:
        from sqlalchemy import create_engine, text

        database = f"cadence_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(f"{PG}/test".replace("postgresql:", "postgresql+psycopg:"))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f"CREATE DATABASE {database}"))
        env["CADENCE_DATABASE_URL"] = f"{PG}/{database}"
    url = (
        f"{PG}/{database}".replace("postgresql:", "postgresql+psycopg:")
        if database
        else f"sqlite:///{home / 'serving.db'}"
    )
    cores = os.cpu_count()
    print(
        f"cores: {cores}; database: {'PostgreSQL' if database else 'SQLite (WAL)'}; "
        f"online store: {args.online_store}; {args.users:,} scored shoppers"
    )
    prepare(home, args.users, args.online_store)
    key = cadence("keys", "create", "--role", "service", env=env).stdout.split()[-1]
    server = Server(env, args.port, home / "server.log", args.workers)
    try:
        server.start()
        fixed_rate(args.port, key, args.users, 20, 3)  # warm: connections, first reads
        for rate in (int(r) for r in args.rates.split(",")):
            got = fixed_rate(args.port, key, args.users, rate, args.latency_seconds)
            print(
                f"GET offer at {rate} requests/s for {args.latency_seconds} s (open loop): "
                f"{got['n']:,} requests ({got['rps']:.0f}/s done), {got['failed']} failed; "
                f"p50 {got['p50_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms "
                "(target: p99 under 20 ms at 200 requests/s)"
            )
        seconds = args.minutes * 60
        record = home / "load.json"
        child = run_load(
            port=args.port,
            key=key,
            users=args.users,
            clients=args.clients,
            seconds=seconds,
            record=record,
        )
        time.sleep(seconds / 2)
        server.kill()
        killed_at = time.perf_counter()
        restart = server.start()
        print(
            f"server killed (SIGKILL) after {seconds / 2:.0f} s of load; back in "
            f"{time.perf_counter() - killed_at:.1f} s (start-up {restart:.1f} s)"
        )
        child.wait()
        time.sleep(5)  # requests in flight when the clients stopped finish on the server
        out = json.loads(record.read_text())
        print(
            f"load: {args.clients} clients for {seconds:.0f} s: {out['requests']:,} requests "
            f"({out['rps']:.0f}/s), {out['failures']:,} failed (connection errors while the "
            "server was down count here, and were never acknowledged)"
        )
        if out["errors"]:
            print(f"  errors: {out['errors']}")
        for name, s in sorted(out["by_name"].items()):
            print(
                f"  {name}: {s['n']:,} requests, {s['failures']:,} failed, "
                f"p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms"
            )
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{args.port}/v1/consolidations",
            data=json.dumps({"ship_date": str(AS_OF + dt.timedelta(days=1))}).encode(),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
            method="POST",
        )
        planned = None
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                planned = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # no logistics in this synthetic shop
            print(f"consolidation: {exc.code} {exc.read()[:200]!r}")
        results = check(url, out, planned or {"plan_id": -1})
        print("the database against the clients' record:")
        for k, v in results.items():
            print(f"  {k}: {v:,}")
    finally:
        server.stop()
        if database:
            from sqlalchemy import create_engine, text

            admin = create_engine(f"{PG}/test".replace("postgresql:", "postgresql+psycopg:"))
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text(f"DROP DATABASE {database} WITH (FORCE)"))
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
