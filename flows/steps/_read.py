"""What the model steps read from the workspace: feature rows, orders, the data's end, consent,
and (on simulated data, for evaluation only) the oracle."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cadence.features import read_manifest
from cadence.features._training import training_frame
from cadence.ingest import read_end


class MissingInput(ValueError):
    """A file or snapshot the step needs is not in the workspace; the message names it."""


def snapshots(features_dir: Path) -> list[pd.Timestamp]:
    return [pd.Timestamp(s) for s in read_manifest(features_dir).snapshots]


def feature_rows(features_dir: Path, at: list[pd.Timestamp] | None = None) -> pd.DataFrame:
    """Every (user, snapshot) row the build made (or those at the given snapshots), with all
    user features.

    The build writes every family's rows in the same order, so its files are read side by
    side; if they ever differ in their keys, the rows go through the point-in-time join
    training sets use (the same values, more slowly)."""
    families = list(read_manifest(features_dir).families)
    tables = [pq.read_table(features_dir / "users" / f"{f}.parquet") for f in families]
    keys = tables[0].select(["user_id", "snapshot_at"])
    if at is not None:
        wanted = pa.array([t.to_pydatetime() for t in at], keys.schema.field(1).type)
        mask = pc.is_in(keys["snapshot_at"], wanted)
        tables = [t.filter(mask) for t in tables]
        keys = keys.filter(mask)
    if all(t.select(["user_id", "snapshot_at"]).equals(keys) for t in tables[1:]):
        columns = {name: keys[name] for name in keys.column_names}
        for t in tables:
            columns.update({name: t[name] for name in t.column_names[2:]})
        return pa.table(columns).to_pandas()
    frame = training_frame(features_dir, keys.rename_columns(["user_id", "event_timestamp"]))
    return frame.to_pandas().rename(columns={"event_timestamp": "snapshot_at"})


def orders(raw: Path, columns: tuple[str, ...] = ("user_id", "ordered_at")) -> pd.DataFrame:
    path = raw / "orders.parquet"
    if not path.exists():
        raise MissingInput(f"no orders in {raw}; generate a world or import an order log")
    return pd.read_parquet(path, columns=list(columns))


def data_end(raw: Path, order_log: pd.DataFrame) -> pd.Timestamp:
    """The data's end from its manifest, else the last order."""
    return read_end(raw) or order_log.ordered_at.max()


def oracle(truth: Path) -> pd.DataFrame | None:
    path = truth / "oracle.parquet"
    return pd.read_parquet(path) if path.exists() else None


def withdrawn(raw: Path, as_of: pd.Timestamp) -> set[str] | None:
    """Users whose latest change before `as_of` withdrew consent to profiling (they may not be
    scored) or to being contacted (they may not be offered anything); None when the data has no
    consent log."""
    path = raw / "consents.parquet"
    if not path.exists():
        return None
    c = pd.read_parquet(path)
    c = c[c.purpose.isin(["profiling", "contact"]) & (c.changed_at < as_of)]
    last = c.sort_values("changed_at").groupby(["user_id", "purpose"]).granted.last()
    return set(last.index.get_level_values("user_id")[~last.to_numpy(bool)])
