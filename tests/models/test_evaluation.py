"""Evaluation on the model world: the report holds segments and bootstrap intervals, and a
rolling-origin backtest retrains per window without touching the registry."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from cadence.flows.conf import default_folder
from cadence.flows.settings import Settings
from cadence.flows.steps import models as step
from cadence.flows.steps._read import feature_rows
from cadence.models._train import evaluate, fit, prepare

pytestmark = pytest.mark.model

# Fewer trees than conf/models.yaml: the backtest fits one model per window.
SMALL = {"propensity": {"n_estimators": 60}, "timing": {"n_estimators": 20}}


@pytest.fixture(scope="module")
def settings(model_home, tmp_path_factory) -> Settings:
    conf = tmp_path_factory.mktemp("evaluation-conf")
    for f in default_folder().glob("*.yaml"):
        (conf / f.name).write_text(f.read_text())
    models = yaml.safe_load((conf / "models.yaml").read_text())
    for part, values in SMALL.items():
        models["training"][part].update(values)
    (conf / "models.yaml").write_text(yaml.safe_dump(models))
    return Settings(home=model_home, conf=conf)


@pytest.fixture(scope="module")
def evaluated(model_home):
    frame = feature_rows(model_home / "features")
    orders = pd.read_parquet(model_home / "raw/orders.parquet", columns=["user_id", "ordered_at"])
    end = pd.Timestamp(json.loads((model_home / "raw/manifest.json").read_text())["end"])
    rows, split = prepare(frame, orders, end=end, horizon_days=30, test=4, calibrate=4)
    feats = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    model = fit(rows, feats, split, **SMALL)
    oracle = pd.read_parquet(model_home / "truth/oracle.parquet")
    return rows, split, evaluate(model, rows, orders, oracle, resamples=100)


def test_the_report_holds_every_scorer_by_segment_with_intervals(evaluated):
    rows, _, report = evaluated
    test = rows[rows.slice == "test"]
    seg = report["segments"]
    assert set(seg) == {"one_order", "repeat", "active_90d", "lapsed_90d"}
    assert seg["one_order"]["n"] == int((test.orders_all == 1).sum())
    assert seg["active_90d"]["n"] + seg["lapsed_90d"]["n"] <= len(test)
    for name, s in seg.items():
        if "note" not in s:
            assert {"model", "bgnbd", "rule", "oracle"} <= s.keys(), name
            assert 0 <= s["model"]["roc_auc"] <= 1 and s["model"]["ece"] >= 0
    iv = report["intervals"]
    assert iv["customers"] == test.user_id.nunique() and iv["resamples"] == 100
    assert set(iv["roc_auc_difference"]) == {"model-bgnbd", "model-rule"}
    assert set(iv["ece"]) == {"model", "bgnbd", "rule", "oracle"}
    for b in [*iv["roc_auc"].values(), *iv["roc_auc_difference"].values()]:
        assert b["low"] <= b["estimate"] <= b["high"]
    assert iv["roc_auc"]["model"]["estimate"] == pytest.approx(report["model"]["roc_auc"])
    d = iv["roc_auc_difference"]["model-rule"]
    assert d["estimate"] == pytest.approx(report["model"]["roc_auc"] - report["rule"]["roc_auc"])
    # On the simulated world the model's lead over the rule is no accident of the sample.
    assert d["low"] > 0


def test_a_backtest_of_two_windows_retrains_for_each_and_registers_nothing(settings, evaluated):
    _, split, _ = evaluated
    mlflow_before = settings.mlflow_dir.exists()
    out = step.backtest(settings, settings.decisions(), None, 2, resamples=50)
    first, last = out["windows"]
    assert last["test_window"] == split.window("test")  # the newest is the default split's
    assert first["test_window"] < last["test_window"]
    assert first["calibrate_window"] < last["calibrate_window"]
    for w in out["windows"]:
        assert {"model", "bgnbd", "rule"} <= w.keys() and w["n_test"] > 0
        assert set(w["intervals"]["roc_auc_difference"]) == {"model-bgnbd", "model-rule"}
        assert w["model"]["roc_auc"] > w["rule"]["roc_auc"]
    pooled = out["pooled"]
    assert pooled["n_test"] == first["n_test"] + last["n_test"]
    assert pooled["intervals"]["customers"] == pooled["customers"]
    assert settings.mlflow_dir.exists() == mlflow_before


def test_a_backtest_longer_than_the_data_names_the_option(settings):
    with pytest.raises(ValueError, match="--backtest 40: 40 test windows asked for"):
        step.backtest(settings, settings.decisions(), None, 40)
    with pytest.raises(ValueError, match="--backtest 0"):
        step.backtest(settings, settings.decisions(), None, 0)
