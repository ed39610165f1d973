"""The daily drift check on a trained champion: unshifted data passes and is recorded; one
model input multiplied by ten in the latest snapshot starts retraining, and says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from cadence.flows.drift import check_drift
from cadence.flows.settings import Settings
from cadence.flows.steps import _read

pytestmark = pytest.mark.model

CONF = Path(__file__).resolve().parents[2] / "conf"
SHIFTED = "order_value_365d"


def _conf(folder: Path) -> Path:
    """conf/ with the small world's promotion gate (its test slice is noisy) and drift limits
    above the drift this world has by itself (see the test below)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in CONF.glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    models = yaml.safe_load((folder / "models.yaml").read_text())
    models["promotion"]["max_ece"] = 0.05
    (folder / "models.yaml").write_text(yaml.safe_dump(models))
    flows = yaml.safe_load((folder / "flows.yaml").read_text())
    flows["drift"].update(LIMITS)
    (folder / "flows.yaml").write_text(yaml.safe_dump(flows))
    return folder


# Between the champion's test window and the latest snapshot the small world drifts by itself
# beyond the shipped limits (coupons_open: PSI 0.90, as campaigns come and go); these limits sit
# above that, and below what multiplying one input by ten does (order_value_365d: 2.47).
LIMITS = {"max_feature_psi": 1.5, "max_score_psi": 1.0}


def _rewrite(features: Path, change) -> None:
    """Applies `change(table) -> table` to every family file of the feature build."""
    for path in sorted((features / "users").glob("*.parquet")):
        pq.write_table(change(pq.read_table(path)), path)


def _train_and_promote(settings: Settings) -> None:
    """A champion whose test window ends two labelled snapshots before the last, so the check
    has a realised AUC to compare: it is trained on the features up to then."""
    from cadence.flows.steps import models as step

    features = settings.features_dir
    snaps = _read.snapshots(features)
    end = _read.data_end(settings.raw_dir, _read.orders(settings.raw_dir))
    horizon = settings.decisions().models.horizon_days
    cut = [s for s in snaps if s + pd.Timedelta(days=horizon) <= end][-3]
    kept = {p: p.read_bytes() for p in (features / "users").glob("*.parquet")}
    _rewrite(features, lambda t: t.filter(pc.less_equal(t["snapshot_at"], cut.to_pydatetime())))
    try:
        ctx = step.context(settings, settings.decisions(), training=True)
        step.train(ctx)
        promoted, results, _ = step.promote(ctx)
        assert promoted, results
    finally:
        for path, data in kept.items():
            path.write_bytes(data)


def _shift_latest(features: Path, column: str, factor: float) -> None:
    latest = max(_read.snapshots(features))

    def change(t: pa.Table) -> pa.Table:
        if column not in t.column_names:
            return t
        at = pc.equal(t["snapshot_at"], pa.scalar(latest.to_pydatetime(), t["snapshot_at"].type))
        values = t[column]
        scaled = pc.multiply(pc.cast(values, pa.float64()), factor).cast(values.type)
        return t.set_column(t.column_names.index(column), column, pc.if_else(at, scaled, values))

    _rewrite(features, change)


def _client(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def checks(model_home, tmp_path_factory) -> dict:
    """A champion, then the check on the data as it is and on the data with one input shifted;
    each with a retraining callable that records its calls."""
    home = tmp_path_factory.mktemp("drift")
    for part in ("raw", "truth", "features"):
        shutil.copytree(model_home / part, home / part)
    settings = Settings(home=home, conf=_conf(home.parent / f"{home.name}-conf"))
    settings = settings.model_copy(update={"mlflow_tracking_uri": None})
    _train_and_promote(settings)
    out: dict = {"home": home}
    for name in ("unshifted", "shifted"):
        if name == "shifted":
            _shift_latest(settings.features_dir, SHIFTED, 10)
        calls: list[str] = []
        out[name] = check_drift(settings, retrain=calls.append)
        out[f"{name}_calls"] = calls
        # Both checks are of the same snapshot, so the second replaces the first's page.
        out[f"{name}_page"] = Path(out[name]["report"]).read_text()
    return out


def test_unshifted_data_is_within_the_limits_and_its_figures_are_recorded(checks):
    result = checks["unshifted"]
    assert checks["unshifted_calls"] == []
    assert result["verdict"] == "ok" and result["reasons"] == []
    run = _client(checks["home"]).get_run(result["run_id"])
    assert run.data.tags["verdict"] == "ok"
    metrics = run.data.metrics
    assert f"psi.{SHIFTED}" in metrics and "psi.score" in metrics
    assert metrics[f"psi.{SHIFTED}"] < 0.25
    assert 0.5 < metrics["auc.test"] <= 1 and 0.5 < metrics["auc.realised"] <= 1
    assert len([k for k in metrics if k.startswith("psi.")]) > 200
    page = Path(result["report"])
    assert page.name == f"drift-{pd.Timestamp(result['as_of']).date()}.html"
    assert page.parent == checks["home"] / "reports" and page.exists()
    text = checks["unshifted_page"]
    assert "<table>" in text and SHIFTED in text and ">ok<" in text
    artifacts = [a.path for a in _client(checks["home"]).list_artifacts(result["run_id"])]
    assert artifacts == [page.name]
    assert not list(page.parent.glob(".*"))


def test_one_input_times_ten_starts_retraining_once_and_names_it(checks):
    result = checks["shifted"]
    assert len(checks["shifted_calls"]) == 1
    assert SHIFTED in checks["shifted_calls"][0]
    assert result["verdict"] == "retrain"
    assert any(SHIFTED in r for r in result["reasons"])
    assert result["largest_input_psi"].keys() == {SHIFTED}
    run = _client(checks["home"]).get_run(result["run_id"])
    assert run.data.tags["verdict"] == "retrain" and SHIFTED in run.data.tags["reasons"]
    assert run.data.tags["retrain"] == "ran"
    assert run.data.metrics[f"psi.{SHIFTED}"] > LIMITS["max_feature_psi"]
    text = checks["shifted_page"]
    assert f'<tr class="over"><td>{SHIFTED}</td>' in text
