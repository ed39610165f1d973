"""The engine: runs the catalogue's formulas on DuckDB (in-process) or Spark, through Ibis.

The formulas are written once against Ibis; the backend only decides where they run. A feature
as of snapshot t sees only events strictly before t (each family joins its events to the
snapshots on `event time < snapshot_at`).
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cadence.features._catalogue import Family
from cadence.features._prefix import Budget, PrefixGroup, event_plan, fast_specs
from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES

ENGINES = ("duckdb", "spark")
_LOG4J = Path(__file__).resolve().parent / "spark-log4j2.properties"


class FeatureInputError(ValueError):
    """The raw data or the request cannot produce features; the message names what is wrong."""


@dataclass(frozen=True)
class Result:
    users: pa.Table  # user_id, snapshot_at, every available user feature
    nodes: pa.Table | None  # node_id, snapshot_at, node features (None without routing data)
    families: tuple[Family, ...]  # user families computed (the rest lacked their tables)


def _scratch(prefix: str) -> str:
    """A temporary folder for spills, removed when the process ends."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def connect(engine: str, *, memory_share: float = 0.5) -> ibis.BaseBackend:
    if engine == "duckdb":
        # A share of the memory (half by default), and a spill folder: the largest joins
        # (events x snapshots) then spill to disk instead of exhausting the machine.
        share = _memory(memory_share)
        return ibis.duckdb.connect(
            memory_limit=f"{share // 2**20}MB",
            temp_directory=_scratch("cadence-duckdb-"),
        )
    if engine == "spark":
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master("local[2]")
            .appName("cadence-features")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            # Errors only from Spark's log4j (its default profile narrates every start).
            .config(
                "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}"
            )
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "4g")
            # Nothing is written beside the caller: Spark's warehouse goes to a temporary folder.
            .config("spark.sql.warehouse.dir", _scratch("cadence-spark-"))
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        return ibis.pyspark.connect(spark)
    raise FeatureInputError(f"--engine must be one of {ENGINES}, got '{engine}'")


def load_sources(con: ibis.BaseBackend, tables: dict[str, Path]) -> dict[str, ir.Table]:
    return {
        name: con.read_parquet(str(path), table_name=f"raw_{name}") for name, path in tables.items()
    }


def available(families: Sequence[Family], present: set[str]) -> tuple[Family, ...]:
    """Families whose tables are all present; row families need only their inputs' families."""
    return tuple(f for f in families if set(f.tables) <= present)


METHODS = ("prefix", "join")
KEYS = ["user_id", "snapshot_at"]


def compute(
    con: ibis.BaseBackend,
    src: dict[str, ir.Table],
    snapshots: Sequence[dt.datetime],
    *,
    method: str = "prefix",
    families: Sequence[str] | None = None,
) -> Result:
    """Every available feature at each snapshot (of the user `families` named, if given;
    node features only when none are). `prefix` (the default) computes the families' window
    aggregates from per-shopper running totals (`_prefix.py`); `join` joins each event to
    every later snapshot, as the formulas are written. Both give the same values."""
    once = prepare(con, src, snapshots, method=method, families=families, batches=1)
    return once.compute(src, snapshots)


def prepare(
    con: ibis.BaseBackend,
    src: dict[str, ir.Table],
    snapshots: Sequence[dt.datetime],
    *,
    method: str = "prefix",
    families: Sequence[str] | None = None,
    batches: int | None = None,
    events_memory: int | None = None,
) -> Prepared:
    """Reads what a build of `snapshots` needs once: who is present when, and (prefix) each
    group of families' events, sorted. `Prepared.compute` then builds any batch of those
    snapshots, from any thread, at the cost of that batch's rows. With `batches=1` (one
    `compute` of them all), no running total is kept for later batches. The sorted events
    are held only if they fit in `events_memory` bytes (a quarter of the machine's memory
    unless given); otherwise each batch reads them again."""
    if method not in METHODS:
        raise FeatureInputError(f"method must be one of {METHODS}, got '{method}'")
    wanted = USER_FAMILIES
    if families is not None:
        unknown = set(families) - {f.name for f in USER_FAMILIES}
        if unknown:
            raise FeatureInputError(f"no feature family named {sorted(unknown)}")
        wanted = tuple(f for f in USER_FAMILIES if f.name in families)
    return Prepared(src, snapshots, method, wanted, keep=batches != 1, events_memory=events_memory)


class Prepared:
    """A build's shared inputs (see `prepare`); read-only once made."""

    def __init__(
        self,
        src: dict[str, ir.Table],
        snapshots: Sequence[dt.datetime],
        method: str,
        wanted: tuple[Family, ...],
        *,
        keep: bool = True,
        events_memory: int | None = None,
    ) -> None:
        self.snapshots = frozenset(_micros_of(snapshots))
        self.families = families = available(wanted, set(src))
        self.with_nodes = wanted is USER_FAMILIES
        self.population = _Population(src)
        self.queries = []  # (src, snaps) -> a keyed part, from the engine, per batch
        self.evaluators = []  # rows -> row-aligned columns (the families' own prefix forms)
        self.later: list[Family] = []  # families whose derived features wait for the row
        shared: dict[object, list] = {}  # prepare -> the fast specs of every family using it
        source: dict[object, str] = {}  # prepare -> the raw table its events come from
        for fam in families:
            if fam.on_row or fam.fitted is not None:
                continue
            prefix = method == "prefix"
            fast, rest = fast_specs(fam) if prefix and fam.prepare else ([], [])
            if not fast and not (prefix and fam.prefix):
                self.queries.append(fam.compute)
                continue
            if fast:
                shared.setdefault((fam.prepare, fam.entity), []).extend(fast)
                source.setdefault((fam.prepare, fam.entity), fam.tables[0])
            if fam.prefix is not None:  # the rest, and the extra columns
                self.evaluators.append(fam.prefix(src))
            else:
                if rest:
                    self.queries.append(functools.partial(_aggregate, fam, rest))
                if fam.extra is not None:
                    self.queries.append(fam.extra)
            self.later.append(fam)
        # Families built from the same events read and sort them once. Columns no formula
        # reads before the fills come filled.
        self.filled = frozenset(
            f.name for fam in families for f in fam.features if f.fill is not None
        ) - _read_by_derived(self.later)
        snaps_us = np.array(sorted(self.snapshots), dtype=np.int64)
        # Running totals are kept for later batches within a sixteenth of the memory; past it
        # (or with no later batch), each batch makes its own.
        budget = Budget(_memory(0.0625) if keep else 0)
        # The node features do not depend on the shoppers: every snapshot's, once.
        self.nodes = None
        node_families = available(NODE_FAMILIES, set(src))
        if node_families and self.with_nodes:
            nodes = node_families[0].compute(src, _snaps_table(snapshots))
            self.nodes = _utc(nodes.order_by(["node_id", "snapshot_at"]).to_pyarrow())
        # The sorted events are held only if all of them fit in a quarter of the memory;
        # otherwise each batch reads them again.
        room = None
        if keep:
            limit = _memory(0.25) if events_memory is None else events_memory
            room = Budget(limit)
            # A first guess from the tables' sizes, before anything is read.
            guess = sum(
                _guess_bytes(src[source[key]], len(event_plan(*key, src, specs).columns))
                for key, specs in shared.items()
            )
            if guess > limit:
                room.close()
        self.groups = [
            PrefixGroup(
                specs,
                prep,
                entity,
                src,
                snaps_us,
                self.population.ids if entity == "user_id" else None,
                budget,
                room,
            )
            for (prep, entity), specs in shared.items()
        ]
        if room is not None and room.exceeded:
            # Holding some groups would add their memory to each batch's reading of the
            # others: every group is read by each batch, and a batch costs what it did alone.
            for group in self.groups:
                group.read_by_each_batch()

    def compute(self, src: dict[str, ir.Table], snapshots: Sequence[dt.datetime]) -> Result:
        """Every feature at `snapshots` (some of the prepared ones); `src` are the raw tables
        on the caller's connection (the engine's own parts are queried there)."""
        outside = set(_micros_of(snapshots)) - self.snapshots
        if outside:
            raise ValueError(f"{len(outside)} snapshot(s) were not prepared for this build")
        rows, members = self.population.rows(snapshots)
        snaps = _snaps_table(snapshots)
        columns: dict[str, pa.Array] = {}  # row-aligned
        for group in self.groups:
            columns.update(group.columns(rows, self.filled, members, src))
        for evaluate in self.evaluators:
            columns.update(evaluate(rows))
        parts = [_utc(query(src, snaps).to_pyarrow()) for query in self.queries]
        families = self.families
        users = _fit_families(_assemble(rows, columns, parts, self.later, families), families)
        nodes = None
        if self.nodes is not None:
            at = pa.array(_micros_of(snapshots), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            nodes = self.nodes.filter(pc.is_in(self.nodes.column("snapshot_at"), value_set=at))
        return Result(_utc(users), nodes, families)


def _guess_bytes(table: ir.Table, parts: int) -> int:
    """About what a group's sorted events would hold: per row of the table they come from,
    its key (8 bytes), first-event flag (1) and 8 bytes per part column."""
    return int(table.count().execute()) * (9 + 8 * parts)


def _snaps_table(snapshots: Sequence[dt.datetime]) -> ir.Table:
    return ibis.memtable(pd.DataFrame({"snapshot_at": pd.to_datetime(list(snapshots), utc=True)}))


def _aggregate(fam: Family, specs, src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    return fam.aggregate(src, snaps, specs)


def _micros_of(snapshots: Sequence[dt.datetime]) -> list[int]:
    stamps = pd.to_datetime(list(snapshots), utc=True)
    return [int(x) for x in stamps.as_unit("us").asi8]


class _Population:
    """Every shopper and the time from which they are present: signed up (or, in an order
    log, first ordered). A snapshot's rows are the shoppers present strictly before it."""

    def __init__(self, src: dict[str, ir.Table]) -> None:
        if "users" in src:
            u = src["users"]
            table = u.select("user_id", since=u.signup_at)
        else:
            o = src["orders"]
            table = o.group_by("user_id").aggregate(since=o.ordered_at.min())
        table = table.filter(table.user_id.notnull()).to_pyarrow()
        order = pc.sort_indices(table, [("user_id", "ascending")])
        table = table.take(order)
        self.ids = table.column("user_id").combine_chunks()
        self.since = _micros(table.column("since"), null=np.iinfo(np.int64).max)

    def rows(self, snapshots: Sequence[dt.datetime]) -> tuple[pa.Table, np.ndarray]:
        """(user_id, snapshot_at) of everyone present at each snapshot, sorted by both; and
        each row's shopper's position in `ids`."""
        snaps = np.unique(np.array(_micros_of(snapshots), dtype=np.int64))
        user, at = np.nonzero(self.since[:, None] < snaps[None, :])
        when = pa.array(snaps[at], type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        return pa.table({"user_id": self.ids.take(user), "snapshot_at": when}), user


def _read_by_derived(families: list[Family]) -> frozenset[str]:
    """The columns the families' derived formulas read."""
    schema = {f.name: f.dtype for fam in families for f in fam.features}
    t = ibis.table(schema, name="row")
    names = set()
    for fam in families:
        for s in fam.derived:
            names |= {field.name for field in s.fn(t).op().find(ops.Field)}
    return frozenset(names)


def _assemble(
    rows: pa.Table,
    columns: dict[str, pa.Array],
    parts: list[pa.Table],
    later: list[Family],
    families: tuple[Family, ...],
) -> pa.Table:
    """The population's rows (sorted by shopper and snapshot) with every family's columns: the
    prefix path's, already row-aligned, and the engine's parts, placed by key (null where a
    part has no row, as a left join leaves it). Then each family's derived features, the
    fills, the row families and the declared types, in catalogue order. The formulas run as
    projections on the in-process DuckDB, which keeps the rows' order."""
    index = _RowIndex(rows)
    cols = dict(columns)
    for part in parts:
        at = index.locate(part)
        for name in part.column_names:
            if name not in KEYS:
                cols[name] = part.column(name).combine_chunks().take(at)
    con = _projections()
    try:
        return _assembled(con, rows, cols, later, families)
    finally:
        con.disconnect()


def _assembled(
    con: ibis.BaseBackend,
    rows: pa.Table,
    cols: dict[str, pa.Array],
    later: list[Family],
    families: tuple[Family, ...],
) -> pa.Table:
    table = pa.table({**{k: rows.column(k) for k in KEYS}, **cols})
    table = _with(con, table, {s.feature.name: s.fn for fam in later for s in fam.derived})
    fills = {f.name: f.fill for fam in families for f in fam.features if f.fill is not None}
    for name, value in fills.items():
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, _filled(table.column(i), value))
    ready = {}
    for fam in families:
        if fam.on_row:
            ready.update(
                {
                    s.feature.name: s.fn
                    for s in fam.derived
                    if set(s.needs) <= set(table.column_names)
                }
            )
    table = _with(con, table, ready)
    order = [f for fam in families for f in fam.features if f.name in table.column_names]
    return pa.table(
        {
            **{k: table.column(k) for k in KEYS},
            **{f.name: table.column(f.name).cast(pa.type_for_alias(f.dtype)) for f in order},
        }
    )


def _filled(col: pa.ChunkedArray, value) -> pa.ChunkedArray:
    """`col` with its nulls replaced by `value` (NaN is not null and stays)."""
    if col.null_count == 0:
        return col
    return pc.fill_null(col, pa.scalar(value).cast(col.type))


def _with(con: ibis.BaseBackend, table: pa.Table, formulas: dict) -> pa.Table:
    """`table` with each formula (over its columns) computed as a column, in row order."""
    if not formulas:
        return table
    t = ibis.memtable(table)
    out = con.to_pyarrow(t.select(**{name: fn(t) for name, fn in formulas.items()}))
    for name in out.column_names:
        col = out.column(name)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, col)
        else:
            table = table.append_column(name, col)
    return table


class _RowIndex:
    """Where a (user, snapshot) key sits in the population's rows."""

    def __init__(self, rows: pa.Table) -> None:
        ids = rows.column("user_id")
        self.ids = pc.unique(ids)
        snap = _micros(rows.column("snapshot_at"))
        self.snaps = np.unique(snap)
        code = pc.index_in(ids, value_set=self.ids).to_numpy().astype(np.int64)
        self.key = code * len(self.snaps) + np.searchsorted(self.snaps, snap)
        if np.any(np.diff(self.key) < 0):
            raise ValueError("the population's rows must be sorted by user and snapshot")

    def locate(self, part: pa.Table) -> pa.Array:
        """For each population row, the row of `part` with its key (null: none)."""
        code = pc.index_in(part.column("user_id"), value_set=self.ids)
        snap = _micros(part.column("snapshot_at"))
        s = np.minimum(np.searchsorted(self.snaps, snap), len(self.snaps) - 1)
        known = code.is_valid().to_numpy(zero_copy_only=False) & (self.snaps[s] == snap)
        key = pc.fill_null(code, 0).to_numpy().astype(np.int64) * len(self.snaps) + s
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        known &= self.key[pos] == key
        at = np.full(len(self.key), -1, dtype=np.int64)
        at[pos[known]] = np.flatnonzero(known)
        return pa.array(at, mask=at < 0)


def _micros(col: pa.ChunkedArray, *, null: int | None = None) -> np.ndarray:
    us = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return (us if null is None else pc.fill_null(us, null)).to_numpy()


def _memory(share: float) -> int:
    """`share` of the machine's memory, in bytes."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * share)


def _projections() -> ibis.BaseBackend:
    """An in-process DuckDB for one assembly's row formulas (projections only: an eighth of
    the memory, nothing to spill). Each assembly has its own, closed when it is done: the
    flow assembles batches on parallel threads, a connection serves one query at a time, and
    the tables a connection has read stay registered with it until it closes."""
    return ibis.duckdb.connect(memory_limit=f"{_memory(0.125) // 2**20}MB")


def _fit_families(users: pa.Table, families: tuple[Family, ...]) -> pa.Table:
    """Appends the fitted families' columns, computed in Python from the engine's rows (sorted by
    user and snapshot), so DuckDB and Spark builds get the same values."""
    for fam in families:
        if fam.fitted is None:
            continue
        values = fam.fitted(users)
        for f in fam.built_features:
            users = users.append_column(
                f.name, pa.array(values[f.name], type=pa.type_for_alias(f.dtype), from_pandas=True)
            )
    return users


def _utc(table: pa.Table) -> pa.Table:
    """Spark hands timestamps back without a zone; every engine's output is UTC microseconds."""
    i = table.schema.get_field_index("snapshot_at")
    col = table.column(i)
    if col.type.tz is None:
        col = col.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    else:
        col = col.cast(pa.timestamp("us", tz="UTC"))
    return table.set_column(i, "snapshot_at", col)


def split_by_family(users: pa.Table, families: Sequence[Family]) -> dict[str, pa.Table]:
    """One table per family (the Feast views' offline files): keys plus its own columns."""
    out = {}
    for fam in families:
        cols = [f.name for f in fam.features if f.name in users.column_names]
        if cols:
            out[fam.name] = users.select(["user_id", "snapshot_at", *cols])
    return out
