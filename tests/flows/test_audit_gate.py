"""The fairness audit as a promotion gate, through the registry, on a small world.

A model trained on the world as it is passes. A challenger trained on a biased history does
not: through a planted proxy it learned that women's past orders say little (90% of their
recorded outcomes in the training and calibration windows are replaced by coin flips at the
same rate), so it ranks women by less than their data shows, and fewer of them get offers.
The gate refuses it and the champion stays. Under the `mitigate` policy the audit's
ThresholdOptimizer variant is registered, audited and promoted, and both versions record that
mitigation was applied and what it cost.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from cadence.flows.settings import Settings
from cadence.flows.steps import audits as audit_step
from cadence.flows.steps import models as step

pytestmark = pytest.mark.model

CONF = Path(__file__).resolve().parents[2] / "conf"
PROXY = "planted_proxy"


def _conf(folder: Path, **mitigation) -> Path:
    """conf/ with the fairness gate alone (its test slice is small: smaller groups count)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in CONF.glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    models = yaml.safe_load((folder / "models.yaml").read_text())
    models["promotion"]["gates"] = ["fairness_audit"]
    (folder / "models.yaml").write_text(yaml.safe_dump(models))
    audits = yaml.safe_load((folder / "audits.yaml").read_text())
    audits.update(min_group_shoppers=50, resamples=300)
    audits["mitigation"].update(mitigation)
    (folder / "audits.yaml").write_text(yaml.safe_dump(audits))
    return folder


def _female(settings: Settings, ids: pd.Series) -> np.ndarray:
    users = pd.read_parquet(settings.raw_dir / "users.parquet", columns=["user_id", "gender"])
    return (ids.map(users.set_index("user_id").gender) == "female").to_numpy()


def _plant_proxy(settings: Settings) -> None:
    """A feature that all but names a woman, added to the build's first family."""
    path = sorted((settings.features_dir / "users").glob("*.parquet"))[0]
    table = pq.read_table(path)
    female = _female(settings, table.column("user_id").to_pandas())
    noise = np.random.default_rng(0).normal(0, 0.1, len(female))
    pq.write_table(table.append_column(PROXY, pa.array(female + noise)), path)


def _register_biased(settings: Settings) -> str:
    from cadence.models._registry import log_and_register
    from cadence.models._train import fit, prepare

    ctx = step.context(settings, settings.decisions(), training=True)
    frame, log, end = step._data(settings)
    split_conf, training = ctx.conf.split, ctx.conf.training
    rows, split = prepare(
        frame,
        log,
        end=end,
        horizon_days=ctx.horizon,
        test=split_conf.test_snapshots,
        calibrate=split_conf.calibrate_snapshots,
        min_buyers=training.min_buyers,
    )
    y = f"y_{ctx.horizon}d"
    history = rows.slice.isin(["train", "calibrate"]).to_numpy() & _female(settings, rows.user_id)
    rng = np.random.default_rng(1)
    flipped = history & (rng.random(len(rows)) < 0.9)
    rate = rows.loc[history, y].mean()
    rows.loc[flipped, y] = (rng.random(int(flipped.sum())) < rate).astype(int)
    features = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    trained = fit(
        rows,
        features,
        split,
        seed=0,
        n_jobs=2,
        propensity=training.propensity.model_dump(),
        timing=training.timing.model_dump(),
        select=False,
    )
    assert PROXY in trained.propensity.importances().feature.head(15).tolist()
    _, version = log_and_register(
        trained,
        {},
        name=ctx.name,
        experiment_id=ctx.experiment,
        params={},
        tags={},
        example=frame[features].head(5).astype("float64"),
        figures={},
        importances=trained.propensity.importances(),
        curves={},
    )
    return version


@pytest.fixture(scope="module")
def home(model_home, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("audit-gate") / "home"
    for part in ("raw", "truth", "features"):
        shutil.copytree(model_home / part, home / part)
    return home


@pytest.fixture(scope="module")
def champion(home) -> Settings:
    """The model of the world as it is, trained, audited and promoted."""
    settings = Settings(home=home, conf=_conf(home.parent / "conf-block"))
    _plant_proxy(settings)
    ctx = step.context(settings, settings.decisions(), training=True)
    step.train(ctx)
    promoted, results, version = step.promote(ctx)
    assert promoted, results
    [gate] = results
    assert gate.gate == "fairness_audit" and gate.passed
    return settings


def test_an_unbiased_model_passes_and_its_audit_is_kept(champion):
    client = MlflowClient()
    mv = client.get_model_version("repurchase", "1")
    assert mv.tags["audit_verdict"] in ("PASS", "WARN")
    folder, doc = audit_step.latest_audit(champion, "repurchase", "1")
    assert sorted(p.name for p in folder.iterdir()) == ["audit.html", "audit.json", "model_card.md"]
    run = client.get_run(mv.run_id)
    assert run.data.tags["audit_verdict"] == doc["verdict"]
    logged = [a.path for a in client.list_artifacts(mv.run_id, f"audit/{folder.name}")]
    assert f"audit/{folder.name}/audit.html" in logged
    assert any(k.startswith("audit.gender.") for k in run.data.metrics)


def test_the_gate_refuses_a_biased_challenger(champion):
    version = _register_biased(champion)
    promoted, results, _ = step.promote(step.context(champion, champion.decisions()))
    assert not promoted
    [gate] = results
    assert not gate.passed and gate.detail.startswith("FAIL: gender ")
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("repurchase", "champion").version) == "1"
    mv = client.get_model_version("repurchase", version)
    assert "fairness_audit: FAIL" in mv.tags["promotion_refused_reason"]
    _, doc = audit_step.latest_audit(champion, "repurchase", version)
    gender = {c["check"]: c for c in doc["targeting"]["sections"]["gender"]["checks"]}
    assert gender["equalized_odds"]["status"] == "FAIL"
    # Women are offered less, against the previous champion's audit.
    moved = {(r["grouping"], r["gap"]): r for r in doc["history"]["gaps"]}[
        ("gender", "demographic_parity_ratio")
    ]
    assert doc["history"]["champion_version"] == "1" and moved["now"] < moved["before"]
    # On the command line: one line with the verdict and the failing checks, exit 1.
    from typer.testing import CliRunner

    from cadence.cli.app import app

    env = {
        "CADENCE_HOME": str(champion.home),
        "CADENCE_CONF": str(champion.conf),
        "MLFLOW_TRACKING_URI": "",
    }
    r = CliRunner().invoke(app, ["audit", "--model", f"models:/repurchase/{version}"], env=env)
    assert r.exit_code == 1, r.output
    assert r.output.startswith(f"audit repurchase v{version}: FAIL (failing: gender ")


def test_mitigate_registers_a_variant_that_passes_and_records_its_cost(champion, home):
    settings = Settings(
        home=home,
        conf=_conf(home.parent / "conf-mitigate", policy="mitigate", constraints="equalized_odds"),
    )
    biased = str(MlflowClient().get_model_version_by_alias("repurchase", "challenger").version)
    promoted, results, version = step.promote(step.context(settings, settings.decisions()))
    assert [r.passed for r in results] == [False, True], results
    assert promoted and version != biased
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("repurchase", "champion").version) == version
    variant, base = (client.get_model_version("repurchase", v) for v in (version, biased))
    assert variant.tags["mitigation_applied"] == "true" and variant.tags["variant_of"] == biased
    assert base.tags["mitigated_as"] == version
    cost = json.loads(base.tags["mitigation_cost"])
    assert cost == json.loads(variant.tags["mitigation_cost"])
    # Fitted on the gating grouping furthest from its limit, which holds gender.
    assert cost["constraints"] == "equalized_odds" and cost["attribute"].startswith("gender")
    assert cost["after"]["roc_auc"] < cost["before"]["roc_auc"]
    _, doc = audit_step.latest_audit(settings, "repurchase", version)
    assert doc["verdict"] != "FAIL"
    assert "ThresholdOptimizer on gender" in doc["mitigation"]["note"]
    # The mitigated champion's list: contact dates where its post-processor offers.
    target, info = step.score(
        step.context(settings, settings.decisions()), settings.decisions(), None
    )
    schema = json.loads((target / "schema.json").read_text())
    assert schema["offers_by"].startswith("ThresholdOptimizer (equalized odds, on gender")
    scores = pd.read_parquet(target / "scores.parquet")
    from cadence.audits import groupings
    from cadence.models._registry import load

    post = load(f"models:/repurchase/{version}").postprocess
    conf = settings.decisions().audits
    ids = scores.user_id.astype(str)
    groups = groupings(
        audit_step.users_table(settings.raw_dir, [*conf.sensitive, *conf.proxies]),
        ids,
        sensitive=conf.sensitive,
        proxies=conf.proxies,
        intersections=conf.intersections,
    )
    offered = audit_step.variant_decisions(post, scores.p_order_30d.to_numpy(), ids, groups)
    assert offered.any() and (scores.contact_date.notna().to_numpy() == offered).all()
