"""Training sets: a point-in-time join of an entity frame onto the offline feature files.

Feast's `get_historical_features` does the same join; this one runs in DuckDB over the same
Parquet files, which is much faster for 200+ features and many rows. A test checks the two
agree. A row at time ts gets each family's latest snapshot at or before ts
(features at a snapshot use only events before it), and nothing older than the views' TTL.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cadence.features._manifest import read_manifest
from cadence.features.feature_repo.definitions import TTL


def training_frame(features_dir: Path, entities: pa.Table) -> pa.Table:
    """`entities`: user_id, event_timestamp (UTC). Returns them with every user feature."""
    manifest = read_manifest(features_dir)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("entities", entities)
    grid = pa.table(
        {
            "snapshot_at": pa.array(
                manifest.snapshots,
                pa.timestamp("us", tz="UTC"),
            )
        }
    )
    con.register("grid", grid)
    # Every family shares the build's snapshot grid, so the as-of step is done once, against
    # the grid; each family then joins on (user, snapshot) by hash.
    con.execute(f"""
        CREATE TEMP TABLE e AS
        SELECT x.user_id, x.event_timestamp,
               CASE WHEN g.snapshot_at >= x.event_timestamp - INTERVAL {TTL.days} DAY
                    THEN g.snapshot_at END AS snap,
               x.rn
        FROM (SELECT *, row_number() OVER () AS rn FROM entities) x
        ASOF LEFT JOIN grid g ON x.event_timestamp >= g.snapshot_at
    """)
    select, joins = ["e.user_id", "e.event_timestamp"], []
    for i, family in enumerate(manifest.families):
        path = features_dir / "users" / f"{family}.parquet"
        cols = [c for c in pq.read_schema(path).names if c not in ("user_id", "snapshot_at")]
        select += [f"f{i}.{c}" for c in cols]
        joins.append(
            f"LEFT JOIN read_parquet('{path}') f{i} "
            f"ON e.user_id = f{i}.user_id AND e.snap = f{i}.snapshot_at"
        )
    query = (
        f"SELECT {', '.join(select)} FROM e {' '.join(joins)} "
        "ORDER BY e.user_id, e.event_timestamp, e.rn"
    )
    return con.execute(query).to_arrow_table()
