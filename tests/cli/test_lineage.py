"""Lineage through the command line: each stage records what it read, and a step whose input
changed after its source was built stops with exit 2, naming the stale stage and the command
to run, and leaves the workspace as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cadence.cli.app import app
from cadence.flows.conf import default_folder
from tests.cli._workspace import workspace_bytes as _bytes

pytestmark = pytest.mark.e2e

runner = CliRunner()
WORLD = ("--users", "300", "--days", "120", "--seed", "9")
# The world regenerated smaller, as a user trying another setting would.
SMALLER = ("--users", "150", "--days", "100", "--seed", "10")
STEPS = (
    ("features", "materialize"),
    ("train", "repurchase"),
    ("evaluate", "repurchase"),
    ("score",),
)


def _conf(folder: Path) -> Path:
    """The default decisions, sized for a 300-user world and a model trained in seconds."""
    folder.mkdir(parents=True)
    for f in default_folder().glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    models = yaml.safe_load((folder / "models.yaml").read_text())
    models["horizon_days"] = 7
    models["split"] = {"test_snapshots": 2, "calibrate_snapshots": 2}
    training = models["training"]
    training["min_buyers"] = 50
    training["propensity"].update(n_estimators=20, max_depth=3)
    training["timing"].update(n_estimators=20, max_depth=3)
    models["promotion"]["max_ece"] = 1.0
    models["scoring"]["drivers"] = "approximate"
    (folder / "models.yaml").write_text(yaml.safe_dump(models))
    features = yaml.safe_load((folder / "features.yaml").read_text())
    features["longest_horizon_days"] = 7
    (folder / "features.yaml").write_text(yaml.safe_dump(features))
    return folder


def _env(home: Path, conf: Path) -> dict[str, str]:
    return {"CADENCE_HOME": str(home), "CADENCE_CONF": str(conf), "MLFLOW_TRACKING_URI": ""}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    """A workspace taken through the whole path once; then its world regenerated smaller
    (every step refuses the old features); then the features rebuilt but not applied
    (materialising refuses the old registry). Each refusal is kept with whether the
    workspace's bytes stayed the same."""
    home = tmp_path_factory.mktemp("lineage")
    conf = _conf(home.parent / f"{home.name}-conf")
    env = _env(home, conf)

    def run(*args: str):
        return runner.invoke(app, list(args), env=env)

    def refused(*args: str) -> tuple:
        before = _bytes(home)
        r = run(*args)
        return r, _bytes(home) == before

    out: dict = {"home": home, "conf": conf}
    for args in (
        ("world", "generate", *WORLD),
        ("features", "build"),
        ("features", "apply"),
        ("train", "repurchase"),
        ("promote", "repurchase"),
        ("score",),
    ):
        r = run(*args)
        assert r.exit_code == 0, f"{args}: {r.output}"
    out["manifest"] = json.loads((home / "features" / "manifest.json").read_text())
    assert run("world", "generate", *SMALLER).exit_code == 0
    out["stale"] = {" ".join(args): refused(*args) for args in STEPS}
    out["stale_status"] = run("status", "--json")
    assert run("features", "build").exit_code == 0
    out["unapplied"] = refused("features", "materialize")
    assert run("features", "apply").exit_code == 0
    out["applied"] = run("features", "materialize")
    return out


def test_a_build_records_the_raw_fingerprint_and_its_own(shop):
    from cadence.flows import _fingerprint

    manifest = shop["manifest"]
    assert len(manifest["data_fingerprint"]) == len(manifest["fingerprint"]) == 64
    # The current build (of the regenerated world) records the raw data it read.
    now = json.loads((shop["home"] / "features" / "manifest.json").read_text())
    assert now["data_fingerprint"] == _fingerprint.files(shop["home"] / "raw")
    assert now["fingerprint"] == _fingerprint.files(shop["home"] / "features")
    assert now["fingerprint"] != manifest["fingerprint"]


def test_a_model_version_records_the_build_it_was_trained_on(shop):
    from mlflow import MlflowClient

    uri = f"sqlite:///{shop['home'] / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("repurchase", "1")
    tags = client.get_run(version.run_id).data.tags
    assert tags["features_fingerprint"] == shop["manifest"]["fingerprint"]


@pytest.mark.parametrize("step", [" ".join(s) for s in STEPS])
def test_each_step_refuses_features_of_other_raw_data(shop, step):
    r, unchanged = shop["stale"][step]
    assert r.exit_code == 2, r.output
    text = r.output.replace("\n", " ")
    assert "features are stale" in text and str(shop["home"] / "raw") in text, text
    assert "run `cadence features build`" in text
    assert "Traceback" not in r.output
    assert unchanged


def test_status_calls_the_features_stale_by_lineage(shop):
    r = shop["stale_status"]
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["features"]["stale"] is True


def test_score_after_regenerating_a_smaller_world_writes_no_list(shop):
    """The old features' 300 users are not scored as if they were the new world's 150."""
    r, unchanged = shop["stale"]["score"]
    assert r.exit_code == 2 and "scored" not in r.output
    assert unchanged


def test_materialize_refuses_a_registry_applied_from_another_build(shop):
    r, unchanged = shop["unapplied"]
    assert r.exit_code == 2, r.output
    text = r.output.replace("\n", " ")
    assert "the Feast registry is stale" in text and "run `cadence features apply`" in text
    assert unchanged
    assert shop["applied"].exit_code == 0, shop["applied"].output


def test_the_train_flow_stops_on_stale_features_with_the_same_message(shop, monkeypatch):
    from cadence.flows.params import TrainParams
    from cadence.flows.pipeline import train
    from cadence.flows.steps._lineage import StaleInput

    home = shop["home"]
    for name, value in _env(home, shop["conf"]).items():
        monkeypatch.setenv(name, value)
    (home / "raw" / "orders.parquet").rename(home / "raw" / "orders.moved")
    try:
        with pytest.raises(StaleInput, match="features are stale: .* run `cadence features build`"):
            train.fn(TrainParams())
    finally:
        (home / "raw" / "orders.moved").rename(home / "raw" / "orders.parquet")
