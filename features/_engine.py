"""The engine: runs the catalogue's formulas on DuckDB (in-process) or Spark, through Ibis.

The formulas are written once against Ibis; the backend only decides where they run. A feature
as of snapshot t sees only events strictly before t (each family joins its events to the
snapshots on `event time < snapshot_at`).
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import tempfile
import threading
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
from cadence.features._prefix import event_plan, fast_specs, prefix_columns
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
        share = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * memory_share)
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
    if method not in METHODS:
        raise FeatureInputError(f"method must be one of {METHODS}, got '{method}'")
    snaps = ibis.memtable(pd.DataFrame({"snapshot_at": pd.to_datetime(list(snapshots), utc=True)}))
    wanted = USER_FAMILIES
    if families is not None:
        unknown = set(families) - {f.name for f in USER_FAMILIES}
        if unknown:
            raise FeatureInputError(f"no feature family named {sorted(unknown)}")
        wanted = tuple(f for f in USER_FAMILIES if f.name in families)
    families = available(wanted, set(src))
    rows = _utc(_population(src, snaps).order_by(KEYS).to_pyarrow())
    columns: dict[str, pa.Array] = {}  # row-aligned, from the prefix path
    parts: list[pa.Table] = []  # keyed by (user, snapshot), from the engine
    later: list[Family] = []  # families whose derived features wait for the assembled row
    shared: dict[object, list] = {}  # prepare -> the fast specs of every family using it
    for fam in families:
        if fam.on_row or fam.fitted is not None:
            continue
        prefix = method == "prefix"
        fast, rest = fast_specs(fam) if prefix and fam.prepare else ([], [])
        if not fast and not (prefix and fam.prefix):
            parts.append(_utc(fam.compute(src, snaps).to_pyarrow()))
            continue
        if fast:
            shared.setdefault((fam.prepare, fam.entity), []).extend(fast)
        if fam.prefix is not None:  # the rest, and the extra columns
            columns.update(fam.prefix(src, rows))
        else:
            if rest:
                parts.append(_utc(fam.aggregate(src, snaps, rest).to_pyarrow()))
            if fam.extra is not None:
                parts.append(_utc(fam.extra(src, snaps).to_pyarrow()))
        later.append(fam)
    # Families built from the same events read and sort them once. Columns no formula reads
    # before the fills come filled.
    filled = frozenset(
        f.name for fam in families for f in fam.features if f.fill is not None
    ) - _read_by_derived(later)
    for (prepare, entity), specs in shared.items():
        plan = event_plan(prepare, entity, src, specs)
        events = plan.table.to_pyarrow()
        columns.update(prefix_columns(specs, plan, events, entity, rows, filled))
    users = _fit_families(_assemble(rows, columns, parts, later, families), families)
    nodes = None
    node_families = available(NODE_FAMILIES, set(src))
    if node_families and wanted is USER_FAMILIES:
        nodes = node_families[0].compute(src, snaps).order_by(["node_id", "snapshot_at"])
        nodes = _utc(nodes.to_pyarrow())
    return Result(_utc(users), nodes, families)


def _read_by_derived(families: list[Family]) -> frozenset[str]:
    """The columns the families' derived formulas read."""
    schema = {f.name: f.dtype for fam in families for f in fam.features}
    t = ibis.table(schema, name="row")
    names = set()
    for fam in families:
        for s in fam.derived:
            names |= {field.name for field in s.fn(t).op().find(ops.Field)}
    return frozenset(names)


def _population(src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    """Every shopper present at each snapshot: signed up (or, in an order log, first ordered)
    before it."""
    if "users" in src:
        u = src["users"]
        return u.join(snaps, u.signup_at < snaps.snapshot_at).select("user_id", "snapshot_at")
    o = src["orders"]
    first = o.group_by("user_id").aggregate(first=o.ordered_at.min())
    return first.join(snaps, first.first < snaps.snapshot_at).select("user_id", "snapshot_at")


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
    table = pa.table({**{k: rows.column(k) for k in KEYS}, **cols})
    table = _with(table, {s.feature.name: s.fn for fam in later for s in fam.derived})
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
    table = _with(table, ready)
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


def _with(table: pa.Table, formulas: dict) -> pa.Table:
    """`table` with each formula (over its columns) computed as a column, in row order."""
    if not formulas:
        return table
    t = ibis.memtable(table)
    out = _local().to_pyarrow(t.select(**{name: fn(t) for name, fn in formulas.items()}))
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


def _micros(col: pa.ChunkedArray) -> np.ndarray:
    return col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


def _local() -> ibis.BaseBackend:
    """The in-process DuckDB that evaluates the row formulas: one per thread (the flow
    computes batches on parallel threads, and a connection serves one query at a time)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        con = _LOCAL.con = connect("duckdb", memory_share=0.125)  # projections only
    return con


_LOCAL = threading.local()


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
