from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cadence.world import WorldConfig
from tests.world.conftest import run_world

TINY = WorldConfig(users=150, days=40, seed=3, start=dt.date(2025, 5, 1), truth_every_days=10)
END = pd.Timestamp(TINY.start, tz="UTC") + pd.Timedelta(days=TINY.days)


@pytest.fixture(scope="session")
def tiny_tables():
    return {k: v for k, v in run_world(TINY).items() if not k.startswith("truth_")}


@pytest.fixture
def frames(tiny_tables) -> dict[str, pd.DataFrame]:
    """A fresh, valid set of every raw table, for a test to break."""
    return {name: t.to_pandas() for name, t in tiny_tables.items()}


@pytest.fixture
def raw_dir(tmp_path: Path, tiny_tables) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for name, table in tiny_tables.items():
        pq.write_table(table, folder / f"{name}.parquet")
    (folder / "manifest.json").write_text(json.dumps({"source": "world", "end": END.isoformat()}))
    return folder
