from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from cadence.world import WorldConfig

# A small world for stages after the foundation: big enough to have every kind of event.
STAGE_WORLD = WorldConfig(
    users=400, days=120, seed=21, start=dt.date(2025, 1, 1), truth_every_days=7
)


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    """A generated workspace (`raw/`, `truth/`) shared by the tests of later stages."""
    from cadence.flows.steps.world import generate as write_world

    home = tmp_path_factory.mktemp("home")
    write_world(STAGE_WORLD, home / "raw", home / "truth")
    return home


# A world for the model stage: enough buyers (500+) and weeks for a time split with gaps.
MODEL_WORLD = WorldConfig(users=1500, days=240, seed=5, start=dt.date(2025, 1, 1))


@pytest.fixture(scope="session")
def model_home(tmp_path_factory) -> Path:
    """A workspace with the model world's `raw/`, `truth/` and `features/` (weekly grid)."""
    from cadence.flows.conf import FeaturesConf
    from cadence.flows.steps.features import build_features
    from cadence.flows.steps.world import generate as write_world

    home = tmp_path_factory.mktemp("model-home")
    write_world(MODEL_WORLD, home / "raw", home / "truth")
    build_features(home / "raw", home / "features", None, "duckdb", FeaturesConf())
    return home


@pytest.fixture(autouse=True)
def _tracking_uri_stays_unset():
    """`mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI; a test that calls it must not
    hand its workspace's database to every later test's settings."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server for the whole session (it takes about 15 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# A world small enough to run the whole pipeline in a test: a 7-day horizon needs fewer weeks.
FLOW_WORLD = {"users": 700, "days": 150, "seed": 11, "start": "2025-01-01"}


def flow_conf(folder: Path, **world) -> Path:
    """A copy of the default conf/ sized for FLOW_WORLD (7-day horizon, fewer buyers, a looser
    calibration limit for its few thousand test rows, no retry delays)."""
    import yaml

    from cadence.flows.conf import default_folder

    folder.mkdir(parents=True, exist_ok=True)
    for f in default_folder().glob("*.yaml"):
        (folder / f.name).write_text(f.read_text())
    data = {
        "world": {**FLOW_WORLD, **world},
        "models": yaml.safe_load((folder / "models.yaml").read_text()),
        "flows": yaml.safe_load((folder / "flows.yaml").read_text()),
        "routing": yaml.safe_load((folder / "routing.yaml").read_text()),
    }
    data["models"]["horizon_days"] = 7
    data["models"]["training"]["min_buyers"] = 200
    data["models"]["promotion"]["max_ece"] = 0.1
    data["flows"]["retries"] = 0
    data["flows"]["retry_delay_seconds"] = 0
    # A week held out and smaller boosters: routing is trained, gated and replayed quickly.
    data["routing"]["holdout_days"] = 7
    data["routing"]["models"]["n_estimators"] = 60
    data["routing"]["models"]["min_parcels"] = 300
    data["routing"]["promotion"]["max_next_day_drop"] = 0.5
    for name in ("world", "models", "flows", "routing"):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data[name]))
    return folder


TIERS = ("unit", "data", "model", "e2e")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: an untiered test is refused in any run
def pytest_collection_modifyitems(config, items) -> None:
    """Every test carries exactly one tier marker (`make test-fast` selects by them), so a new
    test cannot leave its tier unsaid."""
    wrong = {}
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong[item.nodeid] = tiers
    if wrong:
        listed = "\n".join(f"  {node}: {tiers or 'none'}" for node, tiers in wrong.items())
        raise pytest.UsageError(
            f"{len(wrong)} test(s) without exactly one tier marker ({', '.join(TIERS)}); "
            "put `pytestmark = pytest.mark.<tier>` at the top of the module, or mark the test "
            f"(see the markers in pyproject.toml):\n{listed}"
        )
