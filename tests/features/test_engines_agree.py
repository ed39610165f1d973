"""One definition, two engines: DuckDB and Spark give the same features on a small world."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cadence.features import compute, connect, load_sources
from cadence.ingest import SCHEMAS

pytestmark = pytest.mark.data

SNAPS = [dt.datetime(2025, 2, 17, tzinfo=dt.UTC), dt.datetime(2025, 4, 1, tzinfo=dt.UTC)]


@pytest.mark.slow
def test_duckdb_and_spark_compute_identical_features(world_dir):
    raw = world_dir / "raw"
    paths = {t: raw / f"{t}.parquet" for t in SCHEMAS if (raw / f"{t}.parquet").exists()}
    results = {}
    for engine in ("duckdb", "spark"):
        con = connect(engine)
        results[engine] = compute(con, load_sources(con, paths), SNAPS)
    duck, spark = results["duckdb"], results["spark"]
    for a, b in ((duck.users, spark.users), (duck.nodes, spark.nodes)):
        assert a.column_names == b.column_names
        assert a.schema == b.schema
        assert a.num_rows == b.num_rows > 0
        for name in a.column_names:
            x, y = (
                a.column(name).to_numpy(zero_copy_only=False),
                b.column(name).to_numpy(zero_copy_only=False),
            )
            if x.dtype.kind == "f":
                assert np.array_equal(np.isnan(x), np.isnan(y)), name
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-9, equal_nan=True, err_msg=name)
            else:
                assert (x == y).all(), name
