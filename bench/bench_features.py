"""Benchmark: the feature layer on a large world, against the features issue's targets.

Measures, on one machine, in one run:
1. every user feature for one snapshot with DuckDB, and beside it a straightforward pandas
   groupby implementation of the recency/frequency/monetary and gap families (the ratio);
2. a training set of 100,000 (user, timestamp) rows x every user feature (own as-of join);
3. materialisation to the SQLite and Redis online stores (rows per second);
4. online reads of the `repurchase_v1` service for one user: p50 and p99 over 2,000 calls.

    python bench/bench_features.py                   # generates a 1,000,000-user world first
    python bench/bench_features.py --world DIR       # reuse a generated workspace (raw/ in it)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def pandas_rfm_gaps(raw: Path, t: pd.Timestamp) -> pd.DataFrame:
    """The plain-pandas way: the orders and gaps families for one snapshot."""
    o = pd.read_parquet(raw / "orders.parquet", columns=["user_id", "ordered_at", "amount"])
    o = o[o.ordered_at < t]
    age = (t - o.ordered_at).dt.total_seconds() / 86400
    g = o.assign(age=age).groupby("user_id")
    out = pd.DataFrame(
        {
            "orders_all": g.size(),
            "spend_all": g.amount.sum(),
            "days_since_last_order": g.age.min(),
            "days_since_first_order": g.age.max(),
        }
    )
    for w in (7, 14, 30, 60, 90, 180, 365):
        recent = o[age <= w].groupby("user_id")
        out[f"orders_{w}d"] = recent.size()
        out[f"spend_{w}d"] = recent.amount.sum()
        out[f"order_value_{w}d"] = out[f"spend_{w}d"] / out[f"orders_{w}d"]
    days = (o.ordered_at.astype("int64") // 86_400_000_000).rename("day")
    d = pd.DataFrame({"user_id": o.user_id, "day": days}).drop_duplicates()
    d = d.sort_values(["user_id", "day"])
    d["gap"] = d.groupby("user_id").day.diff()
    gg = d.dropna().groupby("user_id").gap
    out["gap_mean"], out["gap_median"], out["gap_std"] = gg.mean(), gg.median(), gg.std()
    out["gap_min"], out["gap_max"], out["gap_last"] = gg.min(), gg.max(), gg.last()
    out["gap_cv"] = out.gap_std / out.gap_mean
    since = t.value // 86_400_000_000_000 - d.groupby("user_id").day.max()
    out["dueness"] = since / out.gap_mean
    return out


def _timed(label: str, fn):
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    print(f"  {label:<58}{seconds:9.1f} s")
    return value, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", type=Path, help="a workspace with raw/ already generated")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--training-rows", type=int, default=100_000)
    parser.add_argument(
        "--materialize-users",
        type=int,
        default=None,
        help="materialise only this many users (default: all)",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")

    from cadence.features import compute, connect, load_sources
    from cadence.features._store import OnlineReader, apply, materialize, open_store
    from cadence.features._training import training_frame
    from cadence.flows.conf import FeaturesConf
    from cadence.flows.steps.features import build_features, raw_inputs
    from cadence.flows.steps.world import generate as write_world
    from cadence.ingest import read_end
    from cadence.world import WorldConfig

    work = Path(tempfile.mkdtemp(prefix="cadence-bench-"))
    home = args.world or work
    try:
        if args.world is None:
            _timed(
                f"generate world ({args.users:,} users x 365 days)",
                lambda: write_world(
                    WorldConfig(users=args.users, days=365, seed=1), home / "raw", home / "truth"
                ),
            )
        raw = home / "raw"
        end = read_end(raw)
        tables, _, _ = raw_inputs(raw)
        n_users = pq.read_metadata(raw / "users.parquet").num_rows
        print(
            f"\nworld: {n_users:,} users, "
            f"{pq.read_metadata(raw / 'orders.parquet').num_rows:,} orders, "
            f"{pq.read_metadata(raw / 'sessions.parquet').num_rows:,} sessions"
        )

        print("\n1. all user features for one snapshot (the data's end)")
        con = connect("duckdb")
        result, duck_s = _timed(
            "DuckDB via Ibis, every family",
            lambda: compute(con, load_sources(con, tables), [end.to_pydatetime()]),
        )
        print(
            f"     -> {result.users.num_rows:,} users x {result.users.num_columns - 2} "
            "features  [target: under 120 s]"
        )
        con2 = connect("duckdb")
        only = {k: v for k, v in tables.items() if k == "orders"}
        rfm, duck_rfm_s = _timed(
            "DuckDB, orders + gaps families only (orders-only input)",
            lambda: compute(con2, load_sources(con2, only), [end.to_pydatetime()]),
        )
        pdf, pandas_s = _timed(
            "pandas groupby, the same orders + gaps families", lambda: pandas_rfm_gaps(raw, end)
        )
        ours = rfm.users.to_pandas().set_index("user_id")
        common = pdf.index.intersection(ours.index)
        for col in ("orders_90d", "spend_365d", "gap_mean", "gap_median", "dueness"):
            a = (
                pdf.loc[common, col]
                .astype(float)
                .fillna(0 if "orders" in col or "spend" in col else np.nan)
            )
            b = ours.loc[common, col].astype(float)
            assert np.allclose(a, b, equal_nan=True, atol=1e-6), col
        print(
            f"     -> same values on {len(common):,} buyers; pandas / DuckDB = "
            f"{pandas_s / duck_rfm_s:.1f}x on the same two families"
        )

        del result, rfm, pdf, ours  # the next steps need the memory

        print("\n2. training set")
        snaps = [end.to_pydatetime() - dt.timedelta(days=28), end.to_pydatetime()]
        conf = FeaturesConf()
        _, build_s = _timed(
            "build: every feature, 2 snapshots, to offline files",
            lambda: build_features(raw, home / "features", snaps, "duckdb", conf),
        )
        rng = np.random.default_rng(0)
        users = pq.read_table(raw / "users.parquet", columns=["user_id"]).column(0)
        pick = rng.integers(0, len(users), args.training_rows)
        offsets = rng.uniform(-20, 5, args.training_rows)
        ts = pd.Timestamp(snaps[1]) + pd.to_timedelta(offsets, unit="D")
        entities = pa.table(
            {
                "user_id": users.take(pa.array(pick)),
                "event_timestamp": pa.array(ts.astype("datetime64[us, UTC]")),
            }
        )
        frame, train_s = _timed(
            f"as-of join, {args.training_rows:,} rows",
            lambda: training_frame(home / "features", entities),
        )
        print(
            f"     -> {frame.num_rows:,} rows x {frame.num_columns - 2} features  "
            "[target: under 60 s]"
        )

        print("\n3. materialisation (the latest snapshot of every view)")
        features_dir = home / "features"
        if args.materialize_users:
            keep = set(users.slice(0, args.materialize_users).to_pylist())
            features_dir = home / "features-subset"
            shutil.copytree(home / "features", features_dir)
            for p in (features_dir / "users").glob("*.parquet"):
                t = pq.read_table(p)
                mask = pa.compute.is_in(t.column("user_id"), pa.array(sorted(keep)))
                pq.write_table(t.filter(mask), p)
        n_mat = args.materialize_users or n_users
        if n_mat < n_users:
            print(f"  (a subset: the first {n_mat:,} of {n_users:,} users; rates scale linearly)")
        n_views = len(json.loads((features_dir / "manifest.json").read_text())["families"])
        stores = {}
        for name, online in (("SQLite", "sqlite"), ("Redis", args.redis)):
            if online.startswith("redis://"):
                import redis

                redis.Redis.from_url(online).flushdb()
            store = open_store(home / f"feast-{name.lower()}", online)
            apply(store, features_dir)
            _, s = _timed(
                f"{name}: {n_mat:,} users x {n_views} views",
                lambda store=store: materialize(store, features_dir),
            )
            print(
                f"     -> {n_mat * n_views / s:,.0f} entity-view rows/s, {n_mat / s:,.0f} users/s"
            )
            stores[name] = store

        print("\n4. online reads of repurchase_v1 for one user (2,000 calls each)")
        sample = users.take(pa.array(rng.integers(0, n_mat, 2000))).to_pylist()
        for name, store in stores.items():
            reader = OnlineReader(store, "repurchase_v1")
            lat = []
            for u in sample:
                t0 = time.perf_counter()
                reader.read([{"user_id": u}])
                lat.append((time.perf_counter() - t0) * 1000)
            print(
                f"  {name:<8} p50 {np.percentile(lat, 50):6.2f} ms   "
                f"p99 {np.percentile(lat, 99):6.2f} ms"
            )
        if args.redis:
            import redis

            redis.Redis.from_url(args.redis).flushdb()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
