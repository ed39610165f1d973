"""The Prefect flows end to end: the pipeline, a fault and the resumed run, the demo summary,
`cadence run` parameters, and the feature build on a local Dask cluster."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli.app import app
from tests.conftest import flow_conf

pytestmark = pytest.mark.e2e

runner = CliRunner()


def _env(monkeypatch, home: Path, conf: Path, online: str = "sqlite") -> None:
    monkeypatch.setenv("CADENCE_HOME", str(home))
    monkeypatch.setenv("CADENCE_CONF", str(conf))
    monkeypatch.setenv("CADENCE_ONLINE_STORE", online)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect"))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _champion(home: Path) -> str | None:
    from cadence.models._registry import CHAMPION, alias_version, configure

    configure(home, None)
    return alias_version("repurchase-7d", CHAMPION) or alias_version("repurchase", CHAMPION)


def _latest_version(home: Path) -> int:
    from cadence.models._registry import configure, latest_version

    configure(home, None)
    return int(latest_version("repurchase") or 0)


@pytest.fixture(scope="module")
def first_run(prefect_api, tmp_path_factory) -> dict:
    """The whole pipeline once, in a fresh workspace."""
    from cadence.flows.pipeline import PipelineParams, pipeline

    home = tmp_path_factory.mktemp("flow-home")
    conf = flow_conf(home.parent / f"{home.name}-conf")
    mp = pytest.MonkeyPatch()
    _env(mp, home, conf)
    try:
        out = pipeline(PipelineParams())
    finally:
        mp.undo()
    return {"home": home, "conf": conf, "out": out}


def test_pipeline_runs_every_flow_in_order(first_run):
    out, home = first_run["out"], first_run["home"]
    assert out["ingest"]["source"] == "world" and out["ingest"]["tables"]["users"] == 700
    assert out["features"]["user_features"] >= 200 and "online_as_of" in out["features"]
    assert out["train"]["version"] == "1" and out["train"]["name"] == "repurchase"
    assert {"model", "rule", "bgnbd", "oracle"} <= out["train"]["report"].keys()
    # The audit ran before promotion, and promotion's gate read it (a tiny world: groups are
    # small, so its checks warn rather than fail).
    audit = out["audit"]
    assert audit["audited"] and audit["version"] == "1" and Path(audit["report"]).exists()
    assert audit["verdict"] in ("PASS", "WARN")
    assert "fairness_audit" in [g["gate"] for g in out["promote"]["gates"]]
    assert out["promote"]["promoted"] and out["promote"]["champion"] == "1"
    score = out["score"]
    assert score["users"] > 100 and Path(score["list"], "scores.csv").exists()
    # A champion fresh from these very features: nothing labelled since its test window, so a
    # drift beyond the limits cannot be learnt from yet and retraining waits.
    drift = score["drift"]
    assert drift["auc_realised"] is None and Path(drift["report"]).exists()
    assert drift["verdict"] == "ok" or drift["retrain"].startswith("waits")
    assert _latest_version(home) == 1
    # The scores reached the online store, where the service reads them.
    from cadence.flows.steps import features as step

    scored = pd.read_parquet(Path(score["list"], "scores.parquet"))
    user = scored.user_id.iloc[0]
    online = step.online(
        home / "features", home / "feast", "sqlite", "repurchase_scores_v1", [user]
    )
    assert online.p_order_7d.iloc[0] == pytest.approx(scored.p_order_7d.iloc[0])
    # Routing: trained, gated and replayed on the held-out week.
    route = out["route"]
    assert route["train"]["version"] == "1" and route["promote"]["promoted"]
    strategies = route["evaluate"]["strategies"]
    assert set(strategies) == {"nearest", "greedy", "optimal", "clairvoyant"}
    assert strategies["optimal"]["capacity_violations"] == 0


def test_a_fault_leaves_champion_and_list_and_the_rerun_resumes(first_run, monkeypatch):
    from cadence.flows.pipeline import PipelineParams, pipeline
    from cadence.ingest import read_manifest

    home, conf = first_run["home"], first_run["conf"]
    lists_before = _digest(home / "lists")
    versions_before = _latest_version(home)
    # New data, and an online store that is not there: the build succeeds, materialising fails.
    flow_conf(conf, seed=12)
    _env(monkeypatch, home, conf, online="redis://127.0.0.1:1")
    state = pipeline(PipelineParams(), return_state=True)
    assert state.is_failed()
    assert _champion(home) == "1"
    assert _digest(home / "lists") == lists_before
    raw_written = read_manifest(home / "raw").written_at
    built = (home / "features" / "manifest.json").read_text()
    assert read_manifest(home / "raw").seed == 12

    # Fixed: the re-run does not regenerate the world nor rebuild the features.
    _env(monkeypatch, home, conf)
    out = pipeline(PipelineParams())
    assert read_manifest(home / "raw").written_at == raw_written
    assert (home / "features" / "manifest.json").read_text() == built
    assert int(out["train"]["version"]) == versions_before + 1
    assert "online_as_of" in out["features"]


def test_retraining_on_unchanged_inputs_is_served_from_the_cache(first_run, monkeypatch):
    from cadence.flows.pipeline import TrainParams, train

    home, conf = first_run["home"], first_run["conf"]
    _env(monkeypatch, home, conf)
    a = train(TrainParams())
    b = train(TrainParams())
    assert a["version"] == b["version"]


def test_run_refuses_unknown_and_bad_parameters(tmp_path):
    env = {"CADENCE_HOME": str(tmp_path)}
    r = runner.invoke(app, ["run", "train", "--horizn", "7"], env=env)
    assert r.exit_code == 2 and "--horizn: unknown parameter" in r.output
    r = runner.invoke(app, ["run", "ingest", "--users", "-3"], env=env)
    assert r.exit_code == 2 and "--users" in r.output and "greater than 0" in r.output
    r = runner.invoke(app, ["run", "ingest", "--source", "orders"], env=env)
    assert r.exit_code == 2 and "needs file, customer, timestamp, amount" in r.output
    r = runner.invoke(app, ["run", "nope"], env=env)
    assert r.exit_code == 2


def test_demo_prints_the_summary_and_where_things_are(prefect_api, tmp_path, monkeypatch):
    home = tmp_path / "home"
    conf = flow_conf(tmp_path / "conf")
    _env(monkeypatch, home, conf)
    r = runner.invoke(app, ["demo"])
    assert r.exit_code == 0, r.output
    for text in ("ROC AUC", "oracle", "bgnbd", "is champion", "high", "scores.csv", "mlflow ui"):
        assert text in r.output, text
    # The audit ran before promotion: its verdict and its report, before the champion line.
    assert re.search(r"fairness audit of v1: (PASS|WARN)", r.output)
    assert r.output.index("fairness audit") < r.output.index("is champion")
    assert re.search(r"audit report: \S+audit\.html", r.output.replace("\n", ""))
    assert (home / "feast" / "online.db").exists()
    # The simulated merge campaign's read-out, nothing merged without a confirmation.
    assert "merge campaign: 28 days from" in r.output
    assert "merged without confirmation: 0" in r.output
    # Routing trained and gated, and the strategies side by side.
    assert "routing v1 is champion" in r.output
    for text in ("nearest", "greedy", "optimal", "clairvoyant", "next-day rate", "A/B"):
        assert text in r.output, text
    # Library chatter went to the workspace log, not the terminal.
    assert "Successfully registered model" not in r.output


def test_features_build_on_a_local_dask_cluster_matches_the_sequential_build(
    prefect_api, world_dir, tmp_path, monkeypatch
):
    import yaml

    from cadence.flows.conf import FeaturesConf
    from cadence.flows.pipeline import FeaturesParams, build_features, task_runner
    from cadence.flows.settings import Settings
    from cadence.flows.steps import features as step

    home = tmp_path / "home"
    (home).mkdir()
    (home / "raw").symlink_to(world_dir / "raw")
    conf = flow_conf(tmp_path / "conf")
    flows = yaml.safe_load((conf / "flows.yaml").read_text())
    flows.update(task_runner="dask", workers=2)
    (conf / "flows.yaml").write_text(yaml.safe_dump(flows))
    _env(monkeypatch, home, conf)
    assert type(task_runner(Settings())).__name__ == "DaskTaskRunner"
    out = build_features(FeaturesParams(materialize=False))
    assert out["snapshots"] >= 2
    step.build_features(world_dir / "raw", tmp_path / "seq", None, "duckdb", FeaturesConf())
    keys = ["user_id", "snapshot_at"]
    files = sorted((home / "features" / "users").glob("*.parquet"))
    assert len(files) >= 10
    for f in files:
        a = pd.read_parquet(f).sort_values(keys, ignore_index=True)
        b = pd.read_parquet(tmp_path / "seq" / "users" / f.name).sort_values(
            keys, ignore_index=True
        )
        pd.testing.assert_frame_equal(a, b)


def test_status_shows_the_workspace_at_a_glance(first_run, tmp_path):
    import json

    empty = runner.invoke(app, ["status"], env={"CADENCE_HOME": str(tmp_path / "none")})
    assert empty.exit_code == 0, empty.output
    assert "raw: none" in empty.output and "models: none" in empty.output
    assert not (tmp_path / "none").exists()

    env = {"CADENCE_HOME": str(first_run["home"]), "CADENCE_CONF": str(first_run["conf"])}
    r = runner.invoke(app, ["status", "--json"], env={**env, "MLFLOW_TRACKING_URI": ""})
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["raw"]["source"] == "world" and s["raw"]["tables"]["orders"] > 0
    assert s["features"]["user_features"] >= 200 and s["features"]["stale"] is False
    assert s["feast"]["registry_updated"] and s["feast"]["online_updated"]
    champions = [m for m in s["models"] if "champion" in m["aliases"]]
    assert {m["name"] for m in champions} == {"repurchase", "routing"}
    (repurchase,) = [m for m in champions if m["name"] == "repurchase"]
    assert 0.5 < repurchase["roc_auc"] <= 1
    assert s["list"]["rows"] > 100
    text = runner.invoke(app, ["status"], env={**env, "MLFLOW_TRACKING_URI": ""})
    assert "registered models" in text.output and "champion" in text.output


def test_the_drift_task_can_start_the_train_flow(first_run, monkeypatch):
    """The score flow's drift check runs as a task; retraining starts the train flow from it."""
    from prefect import flow, task

    from cadence.flows.drift import _train_flow

    _env(monkeypatch, first_run["home"], first_run["conf"])

    @task
    def drift_says_retrain() -> dict:
        return _train_flow("a test's reason")

    @flow
    def score_like() -> dict:
        return drift_says_retrain()

    out = score_like()
    assert out["name"] == "repurchase" and int(out["version"]) >= 1
