"""Benchmark: Cadence's feature engine against other ways to compute the same user features.

Every row of the printed table computes, for each (user, snapshot), from the orders placed
strictly before the snapshot, the same subset:

    orders_{7,30,90,365}d, spend_{7,30,90,365}d   orders and amount paid with age <= window
    days_since_last_order                          age of the latest order
    order_value_mean                               mean order value, all history
    order_value_std                                sample standard deviation of it (n >= 2)
    gap_mean                                       mean days between distinct order days

with Cadence's definitions (`features/_catalogue.py`, `features/_orders.py`): an order's age is
(snapshot - ordered_at) in days at whole seconds (both times floored to the second first), a
window keeps age <= w days, money sums are exact in billionths (64-bit fixed point: each value
times 1e9 in floats, rounded half away from zero), and gaps run between distinct UTC order days
that have ended by the snapshot (day + 1 <= snapshot day). `order_value_mean` is
`spend_all / orders_all`, the catalogue's `order_value_{w}d` formula over all history.
`order_value_std` is the catalogue's (`std_in` on `amount - first_amount`): each order's amount
less the shopper's first order's amount (first by ordered_at, then by amount), d; with n
orders, m1 = the fixed-point sum of d and m2 = that of d * d (each / 1e9), the variance is
(m2 - m1 * m1 / n) / (n - 1), clamped at 0, and the std its square root (null below two
orders). Every peer computes exactly that: the shift is a per-shopper value known before any
snapshot (a window over the orders, before they meet the snapshots), and the rest are sums, so
the one-pass rows stay one pass and the prefix-sums row answers it from prefix sums. The peers
take the mean gap as (last day - first day) / (days - 1): the gaps between sorted distinct days
telescope, so it is the same exact sum over the same count.

Rows (each at 1 snapshot, the data's end, and at 12 weekly snapshots ending there):
  1. Cadence's engine (`compute`, DuckDB through Ibis), its default `prefix` method (running
     totals per shopper looked up at each snapshot), the `orders` and `gaps` families only, on
     the order log alone: the reference every other row is checked against.
  1b. The same with `method="join"`, the definition (every order joined to every later
     snapshot): compared like the peers (the project's tests hold the two paths equal).
  2. Cadence, times only (their other features have no peer): 2a. the `orders` family alone
     (all its features); 2b. every family the engine builds from every raw table (prefix);
     2c. the same with `method="join"` (slow at 200k users: `--skip-cadence-join-all`;
     `--skip-cadence-all` leaves out 2b and 2c).
  3. Featuretools DFS with cutoff times per (user, snapshot), `include_cutoff_time=False` and
     one `training_window` per window (the windows are DFS calls of their own); the std is a
     custom aggregation primitive with Cadence's formula over each order's shifted amount,
     and each order day's gap to the previous one is prepared in pandas, as is the shift
     (DFS then takes their aggregates). Slow: by default only at 1 snapshot
     (`--featuretools-max-snapshots 12` for both, `--skip-featuretools`).
  4. Hand-written DuckDB SQL, one pass: the shift a `first_value` window over the orders, then
     orders joined to the snapshots and one GROUP BY.
  5. Polars, one pass: the shift a window expression over the orders, then orders crossed with
     the snapshots, filtered, one group-by. Polars' float division can be 1 ulp off IEEE's,
     hence its non-zero (but far below 1e-9) differences.
  6. Polars + NumPy prefix sums: orders sorted by (user, time, amount), cumulative counts and
     exact sums (of amount, the shifted amount and its square, and order days), window bounds
     per (user, snapshot) by `np.searchsorted`.
  7. The floor: a scan of the orders file and one aggregate per user (DuckDB), 1 snapshot;
     checked against Cadence's `orders_all`.

Compared pairs: every (user, snapshot) with at least one order before the snapshot (the rows
Cadence's engine emits from an order log alone); a row whose key set differs is a mismatch.
Values must agree within 1e-9 relative (sums of money rounded to 1e-9 first, where one 1e-9
step apart still counts as equal; nulls in the same places); a row that does not is printed
with its first mismatch instead of a time. Times are wall clock of the whole method (reading
the Parquet file included), the best of `--repeat`.

    python bench/bench_engine.py                           # 200,000 users x 1,460 days
    python bench/bench_engine.py --users 5000 --days 200   # a quick run
    python bench/bench_engine.py --world DIR               # reuse DIR/raw (or generate into it)
    python bench/bench_engine.py --featuretools-max-snapshots 12

The default 1,460 days gives about 6 orders per user (measured: 2.2 at 400 days and 6.2 at
1,400 with 5,000 users, 6.1 at 1,460 with 50,000), so about 1.2-1.3 million orders at 200,000
users. Needs the `bench` extra (featuretools, polars).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WINDOWS = (7, 30, 90, 365)
DAY_S = 86_400
US = 1_000_000
NANO = 1e9  # money in exact integer billionths, as Cadence's `fixed`
KEYS = ["user_id", "snap_us"]
SUBSET = [
    *(f"orders_{w}d" for w in WINDOWS),
    *(f"spend_{w}d" for w in WINDOWS),
    "days_since_last_order",
    "order_value_mean",
    "order_value_std",
    "gap_mean",
]
MONEY = {f"spend_{w}d" for w in WINDOWS}  # sums of money: compared rounded to 1e-9
RTOL = 1e-9
TICK = 1e-9 * (1 + 1e-6)  # rounded sums one 1e-9 step apart are equal (a tie split by 1 ulp)


# --- helpers shared by the peers ------------------------------------------------------------
def _snap_frame(snaps: list[pd.Timestamp]) -> pd.DataFrame:
    us = np.array([s.value // 1000 for s in snaps], dtype=np.int64)
    return pd.DataFrame(
        {"snap_us": us, "snap_s": us // US, "snap_day_s": us // US // DAY_S * DAY_S}
    )


def _rint_n(x: np.ndarray) -> np.ndarray:
    """Floats to int64 billionths as Cadence's `fixed` makes them on DuckDB: scaled in floats,
    then rounded half away from zero (`np.rint` alone would round ties to even)."""
    v = np.asarray(x, dtype=np.float64) * NANO
    t = np.trunc(v)
    r = np.rint(v)
    tie = np.abs(v - t) == 0.5
    r[tie] = (t + np.sign(v))[tie]
    return r.astype(np.int64)


def _std_fixed(n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Cadence's `std_in` from the count `n` and the exact sums `s1` of the shifted values and
    `s2` of their squares (int64, 1e-9 units): (m2 - m1 * m1 / n) / (n - 1), clamped at 0,
    its square root; NaN below two values."""
    n = np.asarray(n, dtype=np.float64)
    m1 = np.asarray(s1).astype(np.float64) / NANO
    m2 = np.asarray(s2).astype(np.float64) / NANO
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (m2 - m1 * m1 / n) / (n - 1)
    var = np.where(var < 0, 0.0, var)
    return np.where(n < 2, np.nan, np.sqrt(var))


# --- 1-2. Cadence ---------------------------------------------------------------------------
def cadence_subset(
    orders: Path, snaps: list[pd.Timestamp], families: list[str], method: str = "prefix"
) -> pa.Table:
    """`compute` for the named families on an order log alone: every shopper with an order
    before the snapshot, one row each."""
    from cadence.features import compute, connect, load_sources

    con = connect("duckdb")
    src = load_sources(con, {"orders": orders})
    when = [s.to_pydatetime() for s in snaps]
    return compute(con, src, when, method=method, families=families).users


def cadence_all(
    tables: dict[str, Path], snaps: list[pd.Timestamp], method: str = "prefix"
) -> pa.Table:
    from cadence.features import compute, connect, load_sources

    con = connect("duckdb")
    src = load_sources(con, tables)
    return compute(con, src, [s.to_pydatetime() for s in snaps], method=method).users


def cadence_frame(t: pa.Table) -> pd.DataFrame:
    df = t.to_pandas()
    snap = t.column("snapshot_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    df["snap_us"] = snap.to_numpy()
    n = df["orders_all"].to_numpy(np.float64)
    df["order_value_mean"] = df["spend_all"].to_numpy(np.float64) / n
    return df


# --- 3. Featuretools --------------------------------------------------------------------------
def import_featuretools():
    """featuretools, quiet about its own deprecations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import featuretools as ft
    return ft


def featuretools_subset(orders: Path, snaps: list[pd.Timestamp]) -> pd.DataFrame:
    """DFS on an EntitySet of users <- orders and users <- order days, with cutoff times per
    (user, snapshot) and `include_cutoff_time=False`; one DFS call for all history and one per
    window (`training_window`). Order times are floored to the second (exact: the snapshots
    are whole seconds, see `prefix_sums`); an order day's time is its last microsecond, so
    `time < cutoff` keeps the days that have ended; the gap to a user's previous order day is
    prepared in pandas, as is each order's amount less the shopper's first (by microsecond,
    then amount). The std is a custom aggregation primitive with Cadence's formula over it."""
    ft = import_featuretools()
    from featuretools.primitives import AggregationPrimitive, TimeSinceLast
    from woodwork.column_schema import ColumnSchema
    from woodwork.logical_types import Datetime, Double, Integer, Unknown

    class CadenceStd(AggregationPrimitive):
        """Sample std as Cadence's `std_in`: exact sums of the (shifted) values and of their
        squares at 1e-9, then (m2 - m1 * m1 / n) / (n - 1)."""

        name = "cadence_std"
        input_types = [ColumnSchema(semantic_tags={"numeric"})]
        return_type = ColumnSchema(logical_type=Double, semantic_tags={"numeric"})
        stack_on_self = False
        default_value = np.nan

        def get_function(self):
            def cadence_std(values):
                x = np.asarray(values, dtype=np.float64)
                return float(_std_fixed(len(x), _rint_n(x).sum(), _rint_n(x * x).sum()))

            return cadence_std

    o = pd.read_parquet(orders, columns=["order_id", "user_id", "ordered_at", "amount"])
    o = o.sort_values(["user_id", "ordered_at", "amount"], kind="stable")
    ts_s = o["ordered_at"].astype("int64").to_numpy() // US
    amount = o["amount"].to_numpy(np.float64)
    o = pd.DataFrame(
        {
            "order_id": o["order_id"].to_numpy(),
            "user_id": o["user_id"].to_numpy(),
            "ts": pd.to_datetime(ts_s, unit="s"),
            "amount": amount,
            "shifted": amount
            - o.groupby("user_id", sort=False)["amount"].transform("first").to_numpy(),
        }
    )
    days = (
        pd.DataFrame({"user_id": o["user_id"], "day": ts_s // DAY_S})
        .drop_duplicates()
        .sort_values(["user_id", "day"], kind="stable")
    )
    days["gap"] = days.groupby("user_id", sort=False)["day"].diff()
    days["day_key"] = np.arange(len(days))
    days["day_end"] = pd.to_datetime((days["day"].to_numpy() + 1) * DAY_S * US - 1, unit="us")
    users = pd.DataFrame({"user_id": o["user_id"].unique()})

    es = ft.EntitySet("shop")
    es.add_dataframe(users, "users", index="user_id", logical_types={"user_id": Unknown})
    es.add_dataframe(
        o,
        "orders",
        index="order_id",
        time_index="ts",
        logical_types={"user_id": Unknown, "ts": Datetime, "amount": Double, "shifted": Double},
    )
    es.add_dataframe(
        days[["day_key", "user_id", "day_end", "day", "gap"]],
        "order_days",
        index="day_key",
        time_index="day_end",
        logical_types={"user_id": Unknown, "day_end": Datetime, "day": Integer, "gap": Double},
    )
    es.add_relationship("users", "user_id", "orders", "user_id")
    es.add_relationship("users", "user_id", "order_days", "user_id")

    first = o.groupby("user_id")["ts"].min()
    cut = []
    for s in snaps:
        t = s.tz_convert("UTC").tz_localize(None)
        ids = first.index[first.to_numpy() < t.to_datetime64()]
        cut.append(pd.DataFrame({"user_id": ids, "time": t}))
    cutoff = pd.concat(cut, ignore_index=True)

    common = dict(
        entityset=es,
        target_dataframe_name="users",
        cutoff_time=cutoff,
        cutoff_time_in_index=True,
        include_cutoff_time=False,
        trans_primitives=[],
        max_depth=1,
        verbose=False,
    )
    since = TimeSinceLast(unit="days")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = ft.dfs(
            agg_primitives=["count", "sum", "mean", CadenceStd, since],
            primitive_options={
                "count": {"include_dataframes": ["orders"]},
                "sum": {"include_columns": {"orders": ["amount"]}},
                "cadence_std": {"include_columns": {"orders": ["shifted"]}},
                "time_since_last": {"include_dataframes": ["orders"]},
                "mean": {"include_columns": {"order_days": ["gap"], "orders": ["amount"]}},
            },
            **common,
        )[0]
        out = pd.DataFrame(
            {
                "days_since_last_order": whole["TIME_SINCE_LAST(orders.ts, unit=days)"],
                "order_value_mean": whole["MEAN(orders.amount)"],
                "order_value_std": whole["CADENCE_STD(orders.shifted)"],
                "gap_mean": whole["MEAN(order_days.gap)"],
            }
        )
        for w in WINDOWS:
            fm = ft.dfs(
                agg_primitives=["count", "sum"],
                ignore_dataframes=["order_days"],
                ignore_columns={"orders": ["shifted"]},
                training_window=f"{w} days",
                **common,
            )[0]
            out[f"orders_{w}d"] = fm["COUNT(orders)"]
            out[f"spend_{w}d"] = fm["SUM(orders.amount)"]
    out = out.reset_index()
    out["snap_us"] = out["time"].astype("int64") // 1000
    return out


# --- 4. DuckDB SQL ------------------------------------------------------------------------------
def duckdb_sql(orders: Path, snaps: list[pd.Timestamp]) -> pa.Table:
    """One query: each order's shift by the shopper's first order amount (a `first_value`
    window over the orders), then orders joined to the snapshots and one GROUP BY."""
    import duckdb

    con = duckdb.connect()
    con.register("snaps", _snap_frame(snaps))
    windows = ",\n".join(
        f"count(*) FILTER (WHERE age_s <= {w * DAY_S}) AS orders_{w}d, "
        f"coalesce(sum(amount_n) FILTER (WHERE age_s <= {w * DAY_S}), 0)::DOUBLE / {NANO}"
        f" AS spend_{w}d"
        for w in WINDOWS
    )
    sql = f"""
    WITH r AS (
        SELECT user_id, epoch_us(ordered_at) AS ts_us, amount,
            amount - first_value(amount) OVER (
                PARTITION BY user_id ORDER BY ordered_at, amount) AS d
        FROM read_parquet(?)
    ), o AS (
        SELECT user_id, ts_us, ts_us // {US} AS ts_s,
            round(amount * {NANO})::BIGINT AS amount_n,
            round(d * {NANO})::BIGINT AS d_n,
            round(d * d * {NANO})::BIGINT AS dd_n
        FROM r
    ), j AS (
        SELECT o.*, s.snap_us, s.snap_day_s, s.snap_s - o.ts_s AS age_s
        FROM o JOIN snaps s ON o.ts_us < s.snap_us
    ), a AS (
        SELECT user_id, snap_us,
            {windows},
            min(age_s) / {float(DAY_S)} AS days_since_last_order,
            count(*)::DOUBLE AS n,
            sum(amount_n)::DOUBLE / {NANO} AS s1,
            sum(d_n)::DOUBLE / {NANO} AS m1,
            sum(dd_n)::DOUBLE / {NANO} AS m2,
            count(DISTINCT ts_s // {DAY_S}) FILTER (WHERE ts_s < snap_day_s)::DOUBLE AS k,
            (max(ts_s // {DAY_S}) FILTER (WHERE ts_s < snap_day_s)
             - min(ts_s // {DAY_S}) FILTER (WHERE ts_s < snap_day_s))::DOUBLE AS span
        FROM j GROUP BY user_id, snap_us
    )
    SELECT * EXCLUDE (n, s1, m1, m2, k, span),
        s1 / n AS order_value_mean,
        CASE WHEN n >= 2 THEN sqrt(greatest((m2 - m1 * m1 / n) / (n - 1), 0)) END
            AS order_value_std,
        -- the mean gap between k sorted distinct days telescopes to (last - first) / (k - 1)
        CASE WHEN k >= 2 THEN span / (k - 1) END AS gap_mean
    FROM a
    """
    return con.execute(sql, [str(orders)]).to_arrow_table()


# --- 5. Polars, one pass ----------------------------------------------------------------------
def _fixed(x):
    """A Polars float expression in int64 billionths, as Cadence's `fixed` (half away from
    zero; Polars' default rounds ties to even)."""
    import polars as pl

    return (x * NANO).round(mode="half_away_from_zero").cast(pl.Int64)


def _polars_orders(orders: Path):
    import polars as pl

    return pl.scan_parquet(orders).select(
        "user_id",
        "amount",
        ts_us=pl.col("ordered_at").dt.epoch("us"),
        ts_s=pl.col("ordered_at").dt.epoch("us") // US,
        amount_n=_fixed(pl.col("amount")),
    )


def polars_one_pass(orders: Path, snaps: list[pd.Timestamp]):
    """The shift by the shopper's first order amount a window expression over the orders;
    then orders crossed with the snapshots, filtered to `ts < snapshot`, one group-by."""
    import polars as pl

    s = pl.from_pandas(_snap_frame(snaps)).lazy()
    first = pl.col("amount").sort_by("ts_us", "amount").first().over("user_id")
    o = _polars_orders(orders).with_columns(d=pl.col("amount") - first)
    o = o.with_columns(d_n=_fixed(pl.col("d")), dd_n=_fixed(pl.col("d") * pl.col("d")))
    j = o.join(s, how="cross").filter(pl.col("ts_us") < pl.col("snap_us"))
    j = j.with_columns(
        age_s=pl.col("snap_s") - pl.col("ts_s"),
        day=pl.col("ts_s") // DAY_S,
        ended=pl.col("ts_s") < pl.col("snap_day_s"),
    )
    aggs = []
    for w in WINDOWS:
        inside = pl.col("age_s") <= w * DAY_S
        aggs += [
            inside.sum().cast(pl.Int64).alias(f"orders_{w}d"),
            pl.when(inside).then(pl.col("amount_n")).otherwise(0).sum().alias(f"spend_{w}d"),
        ]
    day = pl.col("day").filter(pl.col("ended"))
    g = j.group_by(KEYS).agg(
        *aggs,
        (pl.col("age_s").min() / float(DAY_S)).alias("days_since_last_order"),
        pl.len().alias("n"),
        pl.col("amount_n").sum().alias("s1"),
        pl.col("d_n").sum().alias("m1"),
        pl.col("dd_n").sum().alias("m2"),
        day.n_unique().alias("k"),
        (day.max() - day.min()).alias("span"),
    )
    # Polars divides floats by its own fast path, up to 1 ulp from IEEE division (e.g. 15 /
    # 86400.0): the reason this row's largest difference is not 0.
    n = pl.col("n").cast(pl.Float64)
    k = pl.col("k").cast(pl.Float64)
    m1 = pl.col("m1").cast(pl.Float64) / NANO
    m2 = pl.col("m2").cast(pl.Float64) / NANO
    var = (m2 - m1 * m1 / n) / (n - 1)
    out = g.with_columns(
        *(pl.col(f"spend_{w}d").cast(pl.Float64) / NANO for w in WINDOWS),
        order_value_mean=pl.col("s1").cast(pl.Float64) / NANO / n,
        order_value_std=pl.when(n >= 2).then(var.clip(lower_bound=0.0).sqrt()),
        gap_mean=pl.when(k >= 2).then(pl.col("span").cast(pl.Float64) / (k - 1)),
    )
    return out.drop("n", "s1", "m1", "m2", "k", "span").collect()


# --- 6. Polars + NumPy prefix sums ------------------------------------------------------------
def prefix_sums(orders: Path, snaps: list[pd.Timestamp]) -> pd.DataFrame:
    """Orders sorted by (user, time, amount); key = user * span + second, so one
    `np.searchsorted` over all users finds each (user, bound). Whole seconds are exact because
    the snapshots are whole seconds: ts_us < snap_us iff floor(ts_us / 1e6) < snap_s. Counts,
    exact spend, distinct order days and the std's exact sums (of each amount less the
    shopper's first, the first row in this order, and of its square) come from prefix sums."""
    import polars as pl

    o = _polars_orders(orders).sort(["user_id", "ts_us", "amount"]).collect()
    user = o["user_id"]
    ts = o["ts_s"].to_numpy()
    amount = o["amount"].to_numpy()
    n = len(ts)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = (user[1:] != user[:-1]).to_numpy()
    starts = np.flatnonzero(new_user)
    code = np.cumsum(new_user) - 1
    d = amount - amount[starts][code]  # less the shopper's first order's amount
    ids = user.gather(pl.Series(starts)).to_numpy()
    day = ts // DAY_S
    new_day = new_user.copy()
    new_day[1:] |= day[1:] != day[:-1]

    def prefix(x: np.ndarray) -> np.ndarray:
        # int64 cumulative sums may wrap around; a difference of two of them is still exact
        # whenever the true range sum fits in int64 (arithmetic modulo 2^64).
        out = np.zeros(n + 1, dtype=np.int64)
        with np.errstate(over="ignore"):
            np.cumsum(x, out=out[1:])
        return out

    c1 = prefix(o["amount_n"].to_numpy())
    cs1 = prefix(_rint_n(d))
    cs2 = prefix(_rint_n(d * d))
    cd = prefix(new_day.astype(np.int64))
    snap_s = [s.value // 1000 // US for s in snaps]
    t0 = int(min(ts.min(), *snap_s))
    span = int(max(ts.max(), *snap_s)) - t0 + 2
    key = code * span + (ts - t0)
    base = np.arange(len(starts), dtype=np.int64) * span

    def bound(second: int) -> np.ndarray:
        """Index of each user's first order at or after `second`."""
        return np.searchsorted(key, base + min(max(second - t0, 0), span - 1), side="left")

    parts = []
    for s, sec in zip(snaps, snap_s, strict=True):
        hi = bound(sec)
        has = hi > starts
        u, lo_all, hi = np.flatnonzero(has), starts[has], hi[has]
        part = {"user_id": ids[u], "snap_us": np.full(len(u), s.value // 1000)}
        for w in WINDOWS:
            lo = bound(sec - w * DAY_S)[has]
            part[f"orders_{w}d"] = hi - lo
            part[f"spend_{w}d"] = (c1[hi] - c1[lo]) / NANO
        part["days_since_last_order"] = (sec - ts[hi - 1]) / float(DAY_S)
        cnt = hi - lo_all
        s1 = (c1[hi] - c1[lo_all]).astype(np.float64)
        part["order_value_mean"] = s1 / NANO / cnt
        part["order_value_std"] = _std_fixed(cnt, cs1[hi] - cs1[lo_all], cs2[hi] - cs2[lo_all])
        # gaps: distinct days that have ended; their mean telescopes to (last - first) / (k - 1)
        hd = bound(sec // DAY_S * DAY_S)[has]
        k = (cd[hd] - cd[lo_all]).astype(np.float64)
        last = day[np.maximum(hd - 1, lo_all)]
        with np.errstate(divide="ignore", invalid="ignore"):
            part["gap_mean"] = np.where(k >= 2, (last - day[lo_all]) / (k - 1), np.nan)
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


# --- 7. The floor -------------------------------------------------------------------------------
def floor_scan(orders: Path, snaps: list[pd.Timestamp]) -> pa.Table:
    import duckdb

    (s,) = snaps
    sql = (
        "SELECT user_id, count(*) AS orders_all FROM read_parquet(?) "
        "WHERE epoch_us(ordered_at) < ? GROUP BY user_id"
    )
    t = duckdb.connect().execute(sql, [str(orders), s.value // 1000]).to_arrow_table()
    return t.append_column("snap_us", pa.array(np.full(t.num_rows, s.value // 1000)))


# --- comparison ------------------------------------------------------------------------------
def cadence_to_frame(t: pa.Table) -> pd.DataFrame:
    return to_frame(cadence_frame(t))


def to_frame(x) -> pd.DataFrame:
    if isinstance(x, pa.Table):
        x = x.to_pandas()
    elif not isinstance(x, pd.DataFrame):  # polars
        x = x.to_pandas()
    x = x.reset_index(drop=True)
    x["user_id"] = x["user_id"].astype(str)
    x["snap_us"] = x["snap_us"].astype(np.int64)
    return x.sort_values(KEYS, kind="stable").reset_index(drop=True)


def compare(ref: pd.DataFrame, got: pd.DataFrame, columns: list[str]) -> tuple[str, str | None]:
    """Largest absolute difference over `columns` (and its column), and the first problem
    found (None: equal within RTOL relative; money rounded to 1e-9 first; nulls in the same
    places)."""
    m = ref[[*KEYS, *columns]].merge(
        got[[*KEYS, *columns]], on=KEYS, how="outer", suffixes=("_ref", "_got"), indicator=True
    )
    only = m["_merge"] != "both"
    if only.any():
        r = m[only].iloc[0]
        side = "Cadence only" if r["_merge"] == "left_only" else "this row only"
        return "-", (
            f"{int(only.sum())} (user, snapshot) pairs not in both, e.g. "
            f"{r['user_id']} @ {pd.Timestamp(r['snap_us'], unit='us')} ({side})"
        )
    worst, where, problem = 0.0, "", None
    for c in columns:
        a = m[f"{c}_ref"].to_numpy(np.float64)
        b = m[f"{c}_got"].to_numpy(np.float64)
        tol = np.float64(0.0)
        if c in MONEY:
            a, b, tol = np.round(a, 9), np.round(b, 9), np.float64(TICK)
        na, nb = np.isnan(a), np.isnan(b)
        both = ~na & ~nb
        diff = np.abs(a - b, where=both, out=np.zeros_like(a))
        if diff.max(initial=0.0) > worst:
            worst, where = float(diff.max()), f" ({c})"
        bad = (na != nb) | (diff > np.maximum(RTOL * np.maximum(np.abs(a), np.abs(b)), tol))
        if bad.any() and problem is None:
            i = int(np.flatnonzero(bad)[0])
            problem = (
                f"{c}: {int(bad.sum())} of {len(a)} differ, e.g. {m['user_id'].iloc[i]} @ "
                f"{pd.Timestamp(m['snap_us'].iloc[i], unit='us')}: Cadence {a[i]!r}, "
                f"this row {b[i]!r}"
            )
    return f"{worst:.3g}{where}", problem


# --- the run ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    label: str
    fn: Callable[[list[pd.Timestamp]], object] | None
    columns: list[str] | None  # compared with Cadence; None: time only
    max_snaps: int = 12
    not_run: str = "not run"  # the cell beyond max_snaps
    why: str = ""  # a note on why
    cells: dict[int, str] = dataclasses.field(default_factory=dict)
    worst: str | None = None  # per snapshot count run, '; '-joined
    notes: list[str] = dataclasses.field(default_factory=list)
    frame: Callable[[object], pd.DataFrame] = to_frame  # the output, keyed and sorted


def _best(fn, snaps, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None  # free the previous result first
        with warnings.catch_warnings():
            # Ibis 12 calls a DuckDB method DuckDB 1.5 marks deprecated (pyproject's pytest
            # filter says the same); nothing here can change that.
            warnings.filterwarnings("ignore", "fetch_arrow_table", DeprecationWarning)
            t0 = time.perf_counter()
            out = fn(snaps)
            best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=1460, help="simulated days (see the docstring)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--world", type=Path, help="a folder whose raw/ is reused, or generated into and kept"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is printed")
    ap.add_argument("--skip-featuretools", action="store_true")
    ap.add_argument(
        "--featuretools-max-snapshots",
        type=int,
        choices=(1, 12),
        default=1,
        help="run featuretools at 12 snapshots too (slow)",
    )
    ap.add_argument(
        "--skip-cadence-all", action="store_true", help="leave out Cadence's every-family rows"
    )
    ap.add_argument(
        "--skip-cadence-join-all",
        action="store_true",
        help="leave out Cadence's every-family row on the join path (slow)",
    )
    args = ap.parse_args()

    from cadence.flows.steps.features import raw_inputs
    from cadence.ingest import read_end

    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    home = args.world or work
    try:
        raw = home / "raw"
        if not (raw / "orders.parquet").exists():
            from cadence.flows.steps.world import generate
            from cadence.world import WorldConfig

            t0 = time.perf_counter()
            cfg = WorldConfig(
                users=args.users, days=args.days, seed=args.seed, start=dt.date(2025, 1, 1)
            )
            generate(cfg, raw, home / "truth")
            print(
                f"generated a world of {args.users:,} users x {args.days:,} days "
                f"in {time.perf_counter() - t0:.1f} s"
            )
        orders = raw / "orders.parquet"
        tables, _, data_end = raw_inputs(raw)
        end = read_end(raw)
        end = pd.Timestamp(data_end) if end is None else end
        if end.value % (US * 1000):
            raise SystemExit(f"the data's end {end} is not a whole second; snapshots must be")
        snaps12 = [end - pd.Timedelta(days=7 * k) for k in range(11, -1, -1)]
        runs = {1: snaps12[-1:], 12: snaps12}

        ids = pq.read_table(orders, columns=["user_id", "amount"])
        n_orders = ids.num_rows
        n_users = (
            pq.read_metadata(raw / "users.parquet").num_rows
            if (raw / "users.parquet").exists()
            else len(ids.column("user_id").unique())
        )
        # Exact int64 sums of squared shifted amounts (1e-9 units; a shift by the first order
        # at most doubles a value) per user: refuse data where they could overflow rather
        # than print wrong numbers.
        per_user = ids.group_by("user_id").aggregate([("amount", "count")])
        most = int(pa.compute.max(per_user.column("amount_count")).as_py())
        top = float(pa.compute.max(pa.compute.abs(ids.column("amount"))).as_py())
        if 4 * top * top * NANO * most >= 2**63:
            raise SystemExit("amounts too large for exact int64 sums of squares in 1e-9 units")
        del ids, per_user

        print(f"machine: os.cpu_count() = {os.cpu_count()}")
        print(f"world: {raw}")
        print(f"sizes: {n_users:,} users, {n_orders:,} orders")
        print(
            f"snapshots: 1 = {snaps12[-1]:%Y-%m-%d %H:%M}; 12 = weekly "
            f"{snaps12[0]:%Y-%m-%d} .. {snaps12[-1]:%Y-%m-%d}"
        )

        subset_fams = ["orders", "gaps"]
        reference = Row(
            "1. Cadence engine: orders + gaps families (prefix) = reference",
            lambda s: cadence_subset(orders, s, subset_fams),
            SUBSET,
            frame=cadence_to_frame,
        )
        rows = [
            reference,
            Row(
                "1b. Cadence engine: orders + gaps families, join (the definition)",
                lambda s: cadence_subset(orders, s, subset_fams, method="join"),
                SUBSET,
                frame=cadence_to_frame,
            ),
            Row(
                "2a. Cadence engine: orders family only (all its features)",
                lambda s: cadence_subset(orders, s, ["orders"]),
                None,
            ),
        ]
        if not args.skip_cadence_all:
            rows.append(
                Row(
                    "2b. Cadence engine: every family, every raw table (prefix)",
                    lambda s: cadence_all(tables, s),
                    None,
                )
            )
            if not args.skip_cadence_join_all:
                rows.append(
                    Row(
                        "2c. Cadence engine: every family, every raw table, join",
                        lambda s: cadence_all(tables, s, method="join"),
                        None,
                    )
                )
        if args.skip_featuretools:
            rows.append(
                Row("3. Featuretools DFS", None, SUBSET, 0, "skipped", "--skip-featuretools")
            )
        else:
            import_featuretools()  # the import's time is not the method's
            rows.append(
                Row(
                    "3. Featuretools DFS (cutoff times, training windows)",
                    lambda s: featuretools_subset(orders, s),
                    SUBSET,
                    args.featuretools_max_snapshots,
                    "not run",
                    "12 snapshots not run (slow); pass --featuretools-max-snapshots 12",
                )
            )
        rows += [
            Row("4. DuckDB SQL, one pass", lambda s: duckdb_sql(orders, s), SUBSET),
            Row(
                "5. Polars, one pass (cross join, filter)",
                lambda s: polars_one_pass(orders, s),
                SUBSET,
            ),
            Row("6. Polars + NumPy prefix sums", lambda s: prefix_sums(orders, s), SUBSET),
            Row(
                "7. floor: scan + count per user (DuckDB)",
                lambda s: floor_scan(orders, s),
                ["orders_all"],
                1,
                "n/a",
                "one snapshot only, compared with Cadence's orders_all",
            ),
        ]

        import duckdb  # noqa: F401  (imports are not the methods' time)
        import polars  # noqa: F401

        refs: dict[int, pd.DataFrame] = {}
        for k, snaps in runs.items():
            for row in rows:
                if row.fn is None or k > row.max_snaps:
                    row.cells[k] = row.not_run
                    if row.why and row.why not in row.notes:
                        row.notes.append(row.why)
                    continue
                print(f"  running {row.label} at {k} snapshot(s)...", flush=True)
                out, seconds = _best(row.fn, snaps, args.repeat)
                if row is reference:
                    refs[k] = row.frame(out)
                    row.cells[k] = f"{seconds:.2f}"
                    row.worst = "0 (the reference)"
                    row.notes.append(f"{k} snapshot(s): {len(refs[k]):,} (user, snapshot) rows")
                    continue
                if row.columns is None:
                    row.cells[k] = f"{seconds:.2f}"
                    continue
                worst, problem = compare(refs[k], row.frame(out), row.columns)
                row.worst = worst if k == 1 or row.worst is None else f"{row.worst}; {worst}"
                if problem is None:
                    row.cells[k] = f"{seconds:.2f}"
                else:
                    row.cells[k] = "MISMATCH"
                    row.notes.append(f"{k} snapshot(s): {problem}")
                del out

        width = max(len(r.label) for r in rows)
        head = f"{'method':<{width}} | {'1 snapshot (s)':>14} | {'12 snapshots (s)':>16} | "
        print()
        print(head + "max abs diff vs Cadence (1 snapshot; 12)")
        print("-" * (len(head) + 30))
        for r in rows:
            if r.columns is None:
                diff = "not compared (features without a peer)"
            else:
                diff = r.worst or "-"
            print(f"{r.label:<{width}} | {r.cells[1]:>14} | {r.cells[12]:>16} | {diff}")
        print()
        print(
            "compared: (user, snapshot) pairs with an order before the snapshot; columns "
            + ", ".join(SUBSET)
            + f"; within {RTOL:g} relative (spend_* rounded to 1e-9, one step allowed); the floor:"
            " orders_all only"
        )
        for r in rows:
            for note in r.notes:
                print(f"  {r.label.split(' ')[0]} {note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
