from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from world import WorldConfig

# A small world for stages after the foundation: big enough to have every kind of event.
STAGE_WORLD = WorldConfig(
    users=400, days=120, seed=21, start=dt.date(2025, 1, 1), truth_every_days=7
)


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    """A generated workspace (`raw/`, `truth/`) shared by the tests of later stages."""
    from flows.world_cli import write_world

    home = tmp_path_factory.mktemp("home")
    write_world(STAGE_WORLD, home / "raw", home / "truth")
    return home


# A world for the model stage: enough buyers (500+) and weeks for a time split with gaps.
MODEL_WORLD = WorldConfig(users=1500, days=240, seed=5, start=dt.date(2025, 1, 1))


@pytest.fixture(scope="session")
def model_home(tmp_path_factory) -> Path:
    """A workspace with the model world's `raw/`, `truth/` and `features/` (weekly grid)."""
    from flows.features_cli import build_features
    from flows.world_cli import write_world

    home = tmp_path_factory.mktemp("model-home")
    write_world(MODEL_WORLD, home / "raw", home / "truth")
    conf = {"every_days": 7, "first_after_days": 28, "horizon_days": 30}
    build_features(home / "raw", home / "features", None, "duckdb", conf)
    return home
