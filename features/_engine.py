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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

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


def connect(engine: str) -> ibis.BaseBackend:
    if engine == "duckdb":
        # Half the memory, and a spill folder: the largest joins (events x snapshots) then
        # spill to disk instead of exhausting the machine.
        half = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
        return ibis.duckdb.connect(
            memory_limit=f"{half // 2**20}MB",
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
) -> Result:
    """Every available feature at each snapshot. `prefix` (the default) computes the families'
    window aggregates from per-shopper running totals (`_prefix.py`); `join` joins each event
    to every later snapshot, as the formulas are written. Both give the same values."""
    if method not in METHODS:
        raise FeatureInputError(f"method must be one of {METHODS}, got '{method}'")
    snaps = ibis.memtable(pd.DataFrame({"snapshot_at": pd.to_datetime(list(snapshots), utc=True)}))
    families = available(USER_FAMILIES, set(src))
    rows = _utc(_population(src, snaps).order_by(KEYS).to_pyarrow())
    columns: dict[str, pa.Array] = {}  # row-aligned, from the prefix path
    parts: list[pa.Table] = []  # keyed by (user, snapshot), from the engine
    later: list[Family] = []  # families whose derived features wait for the assembled row
    for fam in families:
        if fam.on_row or fam.fitted is not None:
            continue
        prefix = method == "prefix"
        fast, rest = fast_specs(fam) if prefix and fam.prepare else ([], [])
        if not fast and not (prefix and fam.prefix):
            parts.append(_utc(fam.compute(src, snaps).to_pyarrow()))
            continue
        if fast:
            plan = event_plan(fam, src, fast)
            columns.update(prefix_columns(fast, plan, plan.table.to_pyarrow(), fam.entity, rows))
        if rest:
            parts.append(_utc(fam.aggregate(src, snaps, rest).to_pyarrow()))
        if fam.prefix is not None:
            columns.update(fam.prefix(src, rows))
        elif fam.extra is not None:
            parts.append(_utc(fam.extra(src, snaps).to_pyarrow()))
        later.append(fam)
    for name, col in columns.items():
        rows = rows.append_column(name, col)
    users = _fit_families(_assemble(rows, parts, later, families), families)
    nodes = None
    node_families = available(NODE_FAMILIES, set(src))
    if node_families:
        nodes = node_families[0].compute(src, snaps).order_by(["node_id", "snapshot_at"])
        nodes = _utc(nodes.to_pyarrow())
    return Result(_utc(users), nodes, families)


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
    rows: pa.Table, parts: list[pa.Table], later: list[Family], families: tuple[Family, ...]
) -> pa.Table:
    """The population's rows with every part joined on, each family's derived features, the
    fills, the row families and the declared types, in catalogue order. It runs in-process
    on DuckDB over the parts already computed, whichever engine computed them."""
    row = ibis.memtable(rows)
    for part in parts:
        t = ibis.memtable(part)
        cols = [c for c in part.column_names if c not in KEYS]
        row = row.left_join(t, KEYS).select(row, *[t[c] for c in cols])
    for fam in later:
        row = row.mutate(**{s.feature.name: s.fn(row) for s in fam.derived})
    fills = {f.name: f.fill for fam in families for f in fam.features if f.fill is not None}
    row = row.mutate(
        **{name: row[name].fill_null(value) for name, value in fills.items() if name in row.columns}
    )
    for fam in families:
        if fam.on_row:
            ready = [s for s in fam.derived if set(s.needs) <= set(row.columns)]
            row = row.mutate(**{s.feature.name: s.fn(row) for s in ready})
    order = [f for fam in families for f in fam.features if f.name in row.columns]
    row = row.select(*KEYS, *[row[f.name].cast(f.dtype).name(f.name) for f in order])
    return _local().to_pyarrow(row.order_by(KEYS))


def _local() -> ibis.BaseBackend:
    """The in-process DuckDB that assembles the rows (one per process)."""
    global _LOCAL
    if _LOCAL is None:
        _LOCAL = connect("duckdb")
    return _LOCAL


_LOCAL: ibis.BaseBackend | None = None


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
