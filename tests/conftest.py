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
