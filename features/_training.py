"""Training sets: a point-in-time join of an entity frame onto the offline feature files.

Feast's `get_historical_features` does the same join; this one runs a DuckDB ASOF join per
family over the same Parquet files, which is much faster for 200+ features and many rows. A
test checks the two agree. A row at time ts gets each family's latest snapshot at or before ts
(features at a snapshot use only events before it), and nothing older than the views' TTL.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from features.feature_repo.definitions import TTL


def training_frame(features_dir: Path, entities: pa.Table) -> pa.Table:
    """`entities`: user_id, event_timestamp (UTC). Returns them with every user feature."""
    manifest = json.loads((features_dir / "manifest.json").read_text())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("entities", entities)
    query = "SELECT e.user_id, e.event_timestamp"
    joins = []
    for i, family in enumerate(manifest["families"]):
        path = features_dir / "users" / f"{family}.parquet"
        cols = [c for c in pq.read_schema(path).names if c not in ("user_id", "snapshot_at")]
        alias = f"f{i}"
        fresh = f"{alias}.snapshot_at >= e.event_timestamp - INTERVAL {TTL.days} DAY"
        query += "".join(f", CASE WHEN {fresh} THEN {alias}.{c} END AS {c}" for c in cols)
        joins.append(
            f"ASOF LEFT JOIN read_parquet('{path}') {alias} "
            f"ON e.user_id = {alias}.user_id AND e.event_timestamp >= {alias}.snapshot_at"
        )
    query += " FROM entities e " + " ".join(joins) + " ORDER BY e.user_id, e.event_timestamp"
    return con.execute(query).to_arrow_table()
