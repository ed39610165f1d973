"""The prefix path (running totals per shopper, looked up at each snapshot) against the join
definition (every event joined to every later snapshot): the same value in every feature."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cadence.features import compute, connect, load_sources, prepare
from cadence.features._catalogue import Agg
from cadence.features.catalogue import USER_FAMILIES
from cadence.ingest import SCHEMAS

pytestmark = pytest.mark.data

UTC = dt.UTC


def _both(paths: dict[str, Path], snaps: list[dt.datetime]):
    con = connect("duckdb")
    src = load_sources(con, paths)
    return compute(con, src, snaps, method="prefix"), compute(con, src, snaps, method="join")


def _assert_same(fast: pa.Table, slow: pa.Table) -> None:
    assert fast.schema == slow.schema
    assert fast.num_rows == slow.num_rows > 0
    differ = []
    for name in fast.column_names:
        x = fast.column(name).to_numpy(zero_copy_only=False)
        y = slow.column(name).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            same = np.array_equal(x, y, equal_nan=True)
        else:
            same = bool((x == y).all())
        if not same:
            differ.append(name)
    assert not differ, f"prefix and join differ in {differ}"


def test_every_feature_equals_the_join_definition_at_many_snapshots(world_dir):
    raw = world_dir / "raw"
    paths = {t: raw / f"{t}.parquet" for t in SCHEMAS if (raw / f"{t}.parquet").exists()}
    # Weekly snapshots, plus ones between midnights and one at a fraction of a second.
    snaps = [dt.datetime(2025, 1, 20, tzinfo=UTC) + dt.timedelta(days=7 * k) for k in range(14)]
    snaps += [
        dt.datetime(2025, 3, 5, 13, 37, 11, tzinfo=UTC),
        dt.datetime(2025, 4, 2, 8, 0, 0, 250_000, tzinfo=UTC),
    ]
    fast, slow = _both(paths, sorted(snaps))
    _assert_same(fast.users, slow.users)
    # Every window aggregate kind occurs, so each prefix form is compared.
    kinds = {
        leaf.kind
        for fam in USER_FAMILIES
        for s in fam.aggregates
        if isinstance(s.fn, Agg)
        for leaf in (s.fn, *s.fn.parts)
    }
    assert kinds == {
        "count",
        "sum",
        "int_sum",
        "mean",
        "std",
        "latest",
        "earliest",
        "distinct",
        "ratio",
    }


def test_an_imported_log_with_text_ids_and_missing_values_gets_the_same_features(tmp_path):
    """An order log as a shop exports it: text customer ids, no channel, some amounts and item
    counts missing, orders on a window's edge and at a snapshot's very instant."""
    rng = np.random.default_rng(3)
    t = pd.Timestamp("2024-06-01", tz="UTC")
    n = 600
    times = t - pd.to_timedelta(rng.integers(1, 400 * 86400, n), unit="s")
    # Exactly 7, 30 and 90 days before a snapshot (in the window), a second more (outside),
    # and at the snapshot itself (not yet seen).
    edge = [t - pd.Timedelta(days=d) for d in (7, 30, 90)]
    edge += [t - pd.Timedelta(days=d, seconds=1) for d in (7, 30, 90)] + [t]
    times = times.append(pd.DatetimeIndex(edge))
    users = [f"c-{k:03d}" for k in rng.integers(0, 60, n)] + ["c-edge"] * len(edge)
    amount = rng.gamma(2.0, 20.0, len(times)).round(2)
    amount[::17] = np.nan
    items = rng.integers(1, 5, len(times)).astype(float)
    items[::13] = np.nan
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, len(times) + 1, dtype=np.int64),
            "user_id": users,
            "ordered_at": times,
            "channel": None,
            "n_items": pd.array(items, dtype="Int32"),
            "amount": amount,
            "discount": np.where(rng.random(len(times)) < 0.3, 5.0, 0.0),
        }
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(
        pa.Table.from_pandas(orders, schema=SCHEMAS["orders"], preserve_index=False), path
    )
    snaps = [(t - pd.Timedelta(days=7 * k)).to_pydatetime() for k in range(20, -1, -1)]
    fast, slow = _both({"orders": path}, snaps)
    _assert_same(fast.users, slow.users)
    last = fast.users.to_pandas().set_index(["user_id", "snapshot_at"]).loc[("c-edge", t)]
    assert (last.orders_7d, last.orders_30d, last.orders_90d) == (1, 3, 5)
    assert last.orders_all == 6


def test_a_build_read_once_and_computed_in_batches_on_threads_equals_one_pass(world_dir):
    """The flow's way: the build's inputs prepared once, its batches computed on two threads,
    each on its own connection; together they are the single computation's rows, in order."""
    raw = world_dir / "raw"
    paths = {t: raw / f"{t}.parquet" for t in SCHEMAS if (raw / f"{t}.parquet").exists()}
    snaps = [dt.datetime(2025, 2, 3, tzinfo=UTC) + dt.timedelta(days=7 * k) for k in range(6)]
    con = connect("duckdb")
    src = load_sources(con, paths)
    whole = compute(con, src, snaps).users
    prepared = prepare(con, src, snaps)
    assert not any(g.per_batch for g in prepared.groups)

    def batches(prepared) -> pa.Table:
        def batch(when: list[dt.datetime]) -> pa.Table:
            own = connect("duckdb")
            return prepared.compute(load_sources(own, paths), when).users

        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(batch, [snaps[:2], snaps[2:4], snaps[4:]]))
        together = pa.concat_tables(parts)
        keys = [("user_id", "ascending"), ("snapshot_at", "ascending")]
        return together.take(pc.sort_indices(together, keys))

    _assert_same(batches(prepared), whole)
    with pytest.raises(ValueError, match="not prepared"):
        prepared.compute(src, [snaps[0] + dt.timedelta(days=1)])
    # With no room for sorted events, every group is read again by each batch: same values.
    tight = prepare(con, src, snaps, events_memory=0)
    assert all(g.per_batch for g in tight.groups)
    _assert_same(batches(tight), whole)
