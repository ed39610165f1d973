"""Feature steps: build the catalogue as of each snapshot, register it in Feast, materialise it.

A build is planned (the raw tables, the data's window, the snapshots in batches), each batch
is computed (in turn here, or in parallel by the `build_features` flow), and the results are
written in snapshot order into a staged folder that replaces the old build whole.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from cadence.features import (
    FeatureInputError,
    FeatureManifest,
    check_range,
    connect,
    default_grid,
    load_sources,
    prepare,
    read_manifest,
    split_by_family,
    write_manifest,
)
from cadence.features.catalogue import USER_FAMILIES
from cadence.flows import _fingerprint
from cadence.flows.conf import FeaturesConf
from cadence.flows.steps import _lineage
from cadence.flows.steps._progress import Progress, Report, silent
from cadence.ingest import SCHEMAS, read_end, staged_dir, type_problems
from cadence.ingest import read_manifest as read_raw_manifest

if TYPE_CHECKING:
    import pandas as pd

    from cadence.features import Prepared
    from cadence.features._store import Registered


@dataclass(frozen=True)
class BuildPlan:
    raw: Path
    tables: dict[str, Path]
    start: dt.datetime
    end: dt.datetime
    snapshots: list[dt.datetime]
    batches: list[list[dt.datetime]]
    data_written_at: dt.datetime | None


@dataclass(frozen=True)
class Batch:
    """One batch's user features split by family (and the node features, if any)."""

    parts: dict[str, pa.Table]
    families: list[str]
    rows: int


def raw_inputs(raw: Path) -> tuple[dict[str, Path], dt.datetime, dt.datetime]:
    """The raw tables present, and the data's start and end; refuses what features cannot use."""
    if not (raw / "orders.parquet").exists():
        raise FeatureInputError(f"{raw}: no orders.parquet; features need at least orders")
    tables = {t: raw / f"{t}.parquet" for t in SCHEMAS if (raw / f"{t}.parquet").exists()}
    for name, path in tables.items():
        for column, problem in type_problems(name, pq.read_schema(path)):
            raise FeatureInputError(f"table {name}, column {column}: {problem}")
    ts = pq.read_table(tables["orders"], columns=["ordered_at"]).column(0)
    first, last = ts.combine_chunks().to_pandas().agg(["min", "max"])
    manifest = read_raw_manifest(raw)
    end = read_end(raw)
    start_t = manifest.start if manifest and manifest.start else first.to_pydatetime()
    end_t = end.to_pydatetime() if end is not None else last.to_pydatetime()
    return tables, start_t.astimezone(dt.UTC), end_t.astimezone(dt.UTC)


def plan_build(
    raw: Path,
    snapshots: list[dt.datetime] | None,
    conf: FeaturesConf,
    *,
    min_batches: int = 1,
) -> BuildPlan:
    """The snapshots (the default grid unless given), in batches of about
    `conf.rows_per_batch` (user, snapshot) rows, and at least `min_batches` of them."""
    tables, start, end = raw_inputs(raw)
    if snapshots is None:
        snapshots = default_grid(
            start,
            end,
            every_days=conf.snapshots.every_days,
            first_after_days=conf.snapshots.first_after_days,
            horizon_days=conf.longest_horizon_days,
        )
    if not snapshots:
        raise FeatureInputError("no snapshots to build")
    try:
        check_range(snapshots, start, end)
    except ValueError as exc:
        raise FeatureInputError(str(exc)) from exc
    n_users = pq.read_metadata(tables["users" if "users" in tables else "orders"]).num_rows
    size = max(1, conf.rows_per_batch // max(n_users, 1))
    size = min(size, max(1, -(-len(snapshots) // min_batches)))
    batches = [snapshots[i : i + size] for i in range(0, len(snapshots), size)]
    manifest = read_raw_manifest(raw)
    return BuildPlan(
        raw, tables, start, end, snapshots, batches, manifest.written_at if manifest else None
    )


def prepare_build(plan: BuildPlan, engine: str) -> Prepared:
    """What every batch of the build shares, read once (`cadence.features.prepare`): who is
    present when, and each group of families' events, sorted."""
    con = connect(engine)
    tables = load_sources(con, plan.tables)
    return prepare(con, tables, plan.snapshots, batches=len(plan.batches))


def compute_batch(
    plan: BuildPlan,
    snapshots: list[dt.datetime],
    engine: str,
    prepared: Prepared | None = None,
) -> Batch:
    """Every available feature as of each of `snapshots`, on its own engine connection, from
    the build's `prepared` inputs (read here for these snapshots alone when not given)."""
    con = connect(engine)
    src = load_sources(con, plan.tables)
    if prepared is None:
        prepared = prepare(con, src, snapshots, batches=1)
    result = prepared.compute(src, snapshots)
    parts = split_by_family(result.users, result.families)
    if result.nodes is not None:
        parts["_nodes"] = result.nodes
    return Batch(parts, [f.name for f in result.families], result.users.num_rows)


class SharedBuild:
    """One prepared build per process, for batches computed as separate tasks (the flow's
    threads, or each Dask worker): the first batch of a build prepares it, the others wait
    for it and share it. A build of other raw data, snapshots or engine replaces it;
    `release` frees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._prepared: Prepared | None = None

    def get(self, plan: BuildPlan, engine: str, key: str) -> Prepared:
        """The build `key` names (the raw data's fingerprint, the engine and the snapshots)."""
        with self._lock:
            if self._key != key:
                self._prepared = None  # the old build's memory goes before the new is read
                self._prepared = prepare_build(plan, engine)
                self._key = key
            assert self._prepared is not None
            return self._prepared

    def release(self) -> None:
        with self._lock:
            self._key, self._prepared = None, None


shared_build = SharedBuild()


def write_build(
    plan: BuildPlan,
    batches: Iterable[Batch],
    out: Path,
    engine: str,
    *,
    raw_fingerprint: str,
    report: Report = silent,
) -> FeatureManifest:
    """Writes the batches, in order, as one Parquet file per family into a staged folder that
    replaces `out` whole when every batch is in. The manifest records `raw_fingerprint` (of
    the raw tables, taken before they were read) and the fingerprint of the files written."""
    rows, families, n_nodes = 0, None, 0
    with staged_dir(out) as tmp:
        (tmp / "users").mkdir()
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            for i, batch in enumerate(batches, 1):
                families = batch.families
                rows += batch.rows
                for name, table in batch.parts.items():
                    if name == "_nodes":
                        n_nodes = table.num_columns - 2
                    if name not in writers:
                        path = (
                            tmp / "nodes.parquet"
                            if name == "_nodes"
                            else tmp / "users" / f"{name}.parquet"
                        )
                        writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
                    writers[name].write_table(table)
                report(
                    Progress(
                        "build",
                        f"batch {i}: {len(batch.families)} families, {rows:,} rows",
                        i,
                        len(plan.batches),
                    )
                )
        finally:
            for w in writers.values():
                w.close()
        if families is None:
            raise FeatureInputError("the build produced no batches")
        columns = {
            name: pq.read_schema(tmp / "users" / f"{name}.parquet").names[2:]
            for name in writers
            if name != "_nodes"
        }
        manifest = FeatureManifest(
            engine=engine,
            data=str(plan.raw),
            snapshots=plan.snapshots,
            rows=rows,
            user_features=sum(len(c) for c in columns.values()),
            families={name: len(c) for name, c in columns.items()},
            families_left_out=[f.name for f in USER_FAMILIES if f.name not in families],
            node_features=n_nodes,
            data_written_at=plan.data_written_at,
            data_fingerprint=raw_fingerprint,
            fingerprint=_fingerprint.files(tmp),
        )
        write_manifest(tmp, manifest)
    return manifest


def unchanged(features_dir: Path, plan: BuildPlan, raw_fingerprint: str, engine: str) -> bool:
    """True when `features_dir` holds a whole build of these raw files, snapshots and engine."""
    try:
        manifest = read_manifest(features_dir)
    except ValueError:
        return False
    return (
        manifest.fingerprint is not None
        and manifest.data_fingerprint == raw_fingerprint
        and manifest.engine == engine
        and manifest.snapshots == plan.snapshots
    )


def build_features(
    raw: Path,
    out: Path,
    snapshots: list[dt.datetime] | None,
    engine: str,
    conf: FeaturesConf,
    *,
    report: Report = silent,
) -> FeatureManifest:
    """Plans the build, reads its inputs once and computes its batches one after another
    (memory: the prepared inputs, held only within a quarter of the machine's, and a batch)."""
    raw_fingerprint = _fingerprint.files(raw)
    plan = plan_build(raw, snapshots, conf)

    def batches() -> Iterator[Batch]:
        report(Progress("build", f"reading the raw tables for {len(plan.snapshots)} snapshots"))
        prepared = prepare_build(plan, engine)
        for snaps in plan.batches:
            report(Progress("build", f"computing {len(snaps)} snapshot(s)"))
            yield compute_batch(plan, snaps, engine, prepared)

    return write_build(plan, batches(), out, engine, raw_fingerprint=raw_fingerprint, report=report)


def open_store(features_dir: Path, feast_dir: Path, online_store: str):
    """The workspace's Feast store; MissingFeatures when nothing is built yet."""
    from cadence.features._store import open_store as _open

    read_manifest(features_dir)
    return _open(feast_dir, online_store)


def apply(
    features_dir: Path, feast_dir: Path, online_store: str, *, lists_dir: Path | None = None
) -> Registered:
    """Makes the Feast registry match the build: entities, one view per family built, the
    feature services, and the scores views over the latest lists in `lists_dir`; the views of
    families the build left out are removed. Returns what is registered and what was removed."""
    from cadence.features._store import apply as _apply

    store = open_store(features_dir, feast_dir, online_store)
    return _apply(store, features_dir, lists_dir=lists_dir)


def materialize(
    features_dir: Path, feast_dir: Path, online_store: str, *, raw: Path
) -> dt.datetime:
    """Loads the latest snapshot of the build's views into the online store; returns its time.
    Stops first (`StaleInput`) when the features were built from other raw tables than `raw`
    holds now, or the registry was applied from another build."""
    from cadence.features._store import materialize as _materialize

    manifest = _lineage.check_features(raw, features_dir)
    _lineage.check_registry(features_dir, feast_dir, manifest)
    return _materialize(open_store(features_dir, feast_dir, online_store), features_dir)


def online(
    features_dir: Path, feast_dir: Path, online_store: str, service: str, users: list[str]
) -> pd.DataFrame:
    from cadence.features._store import online_features

    store = open_store(features_dir, feast_dir, online_store)
    return online_features(store, service, [{"user_id": u} for u in users])


def absent(frame: pd.DataFrame, key: str = "user_id") -> list[str]:
    """The ids an online read found no value for, in any feature: ids the store does not
    know, or never materialised."""
    values = frame.drop(columns=[key])
    return list(dict.fromkeys(frame.loc[values.isna().all(axis=1), key]))
