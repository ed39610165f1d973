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


def compute(
    con: ibis.BaseBackend, src: dict[str, ir.Table], snapshots: Sequence[dt.datetime]
) -> Result:
    snaps = ibis.memtable(pd.DataFrame({"snapshot_at": pd.to_datetime(list(snapshots), utc=True)}))
    families = available(USER_FAMILIES, set(src))
    users = _fit_families(_assemble(src, snaps, families).to_pyarrow(), families)
    nodes = None
    node_families = available(NODE_FAMILIES, set(src))
    if node_families:
        nodes = node_families[0].compute(src, snaps).order_by(["node_id", "snapshot_at"])
        nodes = _utc(nodes.to_pyarrow())
    return Result(_utc(users), nodes, families)


def _assemble(src: dict[str, ir.Table], snaps: ir.Table, families: tuple[Family, ...]):
    """Every shopper present at each snapshot, with each family's columns joined on."""
    if "users" in src:
        u = src["users"]
        pop = u.join(snaps, u.signup_at < snaps.snapshot_at).select("user_id", "snapshot_at")
    else:  # an order log only: a shopper exists from their first order on
        o = src["orders"]
        first = o.group_by("user_id").aggregate(first=o.ordered_at.min())
        pop = first.join(snaps, first.first < snaps.snapshot_at).select("user_id", "snapshot_at")
    keys = ["user_id", "snapshot_at"]
    row = pop
    for fam in families:
        if fam.on_row or fam.fitted is not None:
            continue
        part = fam.compute(src, snaps)
        cols = [f.name for f in fam.features]
        row = row.left_join(part, keys).select(row, *[part[c] for c in cols])
    fills = {f.name: f.fill for fam in families for f in fam.features if f.fill is not None}
    row = row.mutate(
        **{name: row[name].fill_null(value) for name, value in fills.items() if name in row.columns}
    )
    for fam in families:
        if fam.on_row:
            ready = [s for s in fam.derived if set(s.needs) <= set(row.columns)]
            row = row.mutate(**{s.feature.name: s.fn(row) for s in ready})
    casts = {
        f.name: row[f.name].cast(f.dtype)
        for fam in families
        for f in fam.features
        if f.name in row.columns
    }
    return row.mutate(**casts).order_by(keys)


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
