from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pandas as pd
import pyarrow as pa
import pytest

from cadence.world import WorldConfig, simulate

SMALL = WorldConfig(users=4000, days=180, seed=11, start=dt.date(2025, 3, 1), truth_every_days=7)


def run_world(cfg: WorldConfig) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    for name, batch in simulate(cfg):
        parts[name].append(batch)
    return {name: pa.concat_tables(batches) for name, batches in parts.items()}


@pytest.fixture(scope="session")
def small_world() -> dict[str, pa.Table]:
    return run_world(SMALL)


@pytest.fixture(scope="session")
def frames(small_world) -> dict[str, pd.DataFrame]:
    return {name: t.to_pandas() for name, t in small_world.items()}
