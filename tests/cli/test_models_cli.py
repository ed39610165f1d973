"""The repurchase model's life cycle through the `cadence` CLI: train, evaluate, promote (and
refuse), roll back, score; and the same on an orders-only import."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from cadence.cli.app import app
from cadence.models._model_code import CALIBRATIONS

pytestmark = pytest.mark.e2e

runner = CliRunner()
CONF = Path(__file__).resolve().parents[2] / "conf"
METRICS = {"roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"}


def _conf(folder: Path, **changes) -> Path:
    """A copy of conf/ with models.yaml changed: {"promotion.max_ece": 0.1, ...}."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in CONF.glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    data = yaml.safe_load((folder / "models.yaml").read_text())
    # The small world's test slice has ~5,000 rows; its calibration error is noisier.
    data["promotion"]["max_ece"] = 0.05
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    (folder / "models.yaml").write_text(yaml.safe_dump(data))
    return folder


def _run(home: Path, conf: Path, *args: str):
    env = {"CADENCE_HOME": str(home), "CADENCE_CONF": str(conf), "MLFLOW_TRACKING_URI": ""}
    return runner.invoke(app, list(args), env=env)


def _client(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (through no link) and its SHA-256; links and their targets."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = f"-> {path.readlink()}"
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _latest(home: Path, name: str = "repurchase") -> Path:
    return home / "lists" / name / "latest"


@pytest.fixture(scope="module")
def life(model_home, tmp_path_factory) -> dict:
    """Runs the whole life cycle once, in order, and keeps every step's result."""
    home = tmp_path_factory.mktemp("life")
    for part in ("raw", "truth", "features"):
        shutil.copytree(model_home / part, home / part)
    conf = _conf(home.parent / f"{home.name}-conf")
    weak = {"n_estimators": 2, "max_depth": 1, "learning_rate": 0.1}
    worse = _conf(home.parent / f"{home.name}-worse", **{"training.propensity": weak})
    anyway = _conf(home.parent / f"{home.name}-anyway", **{"promotion.margin_roc_auc": -1.0})
    steps = {"home": home}
    steps["score_first"] = _run(home, conf, "score")
    steps["train"] = _run(home, conf, "train", "repurchase")
    steps["evaluate"] = _run(home, conf, "evaluate", "repurchase", "--json")
    steps["audit"] = _run(home, conf, "audit")
    steps["audit_out"] = _run(home, conf, "audit", "--out", str(home.parent / "audit-out"))
    steps["audit_bad_model"] = _run(home, conf, "audit", "--model", "models:/repurchase/9")
    steps["audit_bad_uri"] = _run(home, conf, "audit", "--model", "runs:/abc/model")
    steps["promote"] = _run(home, conf, "promote", "repurchase")
    steps["score"] = _run(home, conf, "score")
    steps["lists_after_first"] = _digest(home / "lists")
    steps["score_again"] = _run(home, conf, "score", "--no-online")
    steps["lists_after_second"] = _digest(home / "lists")
    steps["score_bad_date"] = _run(home, conf, "score", "--as-of", "2020-01-01")
    steps["train_worse"] = _run(home, worse, "train", "repurchase")
    steps["promote_worse"] = _run(home, worse, "promote", "repurchase")
    steps["train_third"] = _run(home, anyway, "train", "repurchase")
    steps["promote_third"] = _run(home, anyway, "promote", "repurchase", "--reason", "retrain")
    steps["rollback"] = _run(home, conf, "rollback", "repurchase", "--reason", "bad week")
    steps["rollback_again"] = _run(home, conf, "rollback", "repurchase", "--reason", "again")
    steps["train_7d"] = _run(home, conf, "train", "repurchase", "--horizon", "7")
    seven = ("--horizon", "7")
    steps["promote_7d"] = _run(home, anyway, "promote", "repurchase", *seven)
    steps["score_7d"] = _run(home, conf, "score", *seven)
    steps["evaluate_7d"] = _run(home, conf, "evaluate", "repurchase", "--json", *seven)
    steps["audit_7d"] = _run(home, conf, "audit", *seven)
    steps["horizon_14"] = _run(home, conf, "score", "--horizon", "14")
    return steps


def test_audit_writes_three_files_and_one_verdict_line(life):
    r = life["audit"]
    assert r.exit_code in (0, 1), r.output
    line = r.output.splitlines()[0]
    assert re.match(r"audit repurchase v1: (PASS|WARN|FAIL)", line)
    assert (r.exit_code == 1) == line.startswith("audit repurchase v1: FAIL")
    runs = sorted((life["home"] / "reports" / "audits" / "repurchase" / "v1").iterdir())
    assert len(runs) == 2  # each audit is kept
    for run in runs:
        assert sorted(p.name for p in run.iterdir()) == [
            "audit.html",
            "audit.json",
            "model_card.md",
        ]
    doc = json.loads((runs[0] / "audit.json").read_text())
    assert doc["model"]["uri"] == "models:/repurchase/1"
    assert doc["settings"]["resamples"] == 1000
    assert set(doc["targeting"]["sections"]) == {
        "gender",
        "age_band",
        "city_tier",
        "region",
        "gender × age_band",
    }
    # --out gets a copy; the history keeps its own.
    assert life["audit_out"].exit_code in (0, 1)
    out = life["home"].parent / "audit-out"
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "model_card.md"]
    # The promotion that followed reused the audit of the same inputs: no third report.
    assert len(list(runs[0].parent.iterdir())) == 2


def test_audit_names_what_is_wrong_with_its_input(life):
    r = life["audit_bad_model"]
    assert r.exit_code == 2 and "models:/repurchase/9: no such model version" in r.output
    r = life["audit_bad_uri"]
    assert r.exit_code == 2 and "expected models:/<name>/<version>" in r.output
    assert "Traceback" not in r.output
    r = life["audit_7d"]
    assert r.exit_code in (0, 1), r.output
    assert r.output.startswith("audit repurchase-7d v1:")


def test_score_before_any_champion_says_to_train_first(life):
    r = life["score_first"]
    assert r.exit_code == 2
    assert "no models" in r.output and "cadence train repurchase" in r.output


def test_train_logs_the_run_and_registers_a_challenger(life):
    assert life["train"].exit_code == 0, life["train"].output
    client = _client(life["home"])
    v = client.get_model_version("repurchase", "1")
    run = client.get_run(v.run_id)
    assert run.data.params["horizon_days"] == "30"
    assert int(run.data.params["features"]) >= 200
    assert run.data.tags["feature_service"] == "repurchase_v1"
    # The calibration chosen on the calibration slice, and every candidate's cross-validated
    # log loss there; the registered model applies the one the run names.
    chosen = run.data.params["calibration"]
    losses = {m: run.data.metrics[f"calibration.{m}_cv_log_loss"] for m in CALIBRATIONS}
    assert chosen == min(losses, key=losses.get)
    local = Path(mlflow.artifacts.download_artifacts("models:/repurchase/1"))
    stored = json.loads((local / "artifacts" / "calibration.json").read_text())
    assert stored["method"] == chosen and stored["cv_log_loss"] == pytest.approx(losses)
    assert {"data_window", "train_window", "test_window"} <= run.data.tags.keys()
    for name in ("model", "rule", "bgnbd", "oracle"):
        assert 0.5 < run.data.metrics[f"{name}.roc_auc"] <= 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"calibration.png", "gain.png", "feature_importance.csv", "evaluation.json"} <= artifacts
    # Model selection: on the world the hybrid beats BG/NBD, and the run says by how much.
    assert run.data.params["propensity_model"] == "xgboost"
    assert "the XGBoost hybrid beat BG/NBD" in run.data.tags["selection_reason"]
    sel = {k: run.data.metrics[f"selection.{k}.roc_auc"] for k in ("hybrid", "btyd")}
    assert sel["hybrid"] > sel["btyd"] > 0.5
    # Customer value, judged on realised spend, in the run.
    for model in ("bgnbd_gamma_gamma", "cadence_value"):
        assert run.data.metrics[f"value.90d.{model}.mae"] > 0
        assert -1 <= run.data.metrics[f"value.90d.{model}.spearman"] <= 1
    assert 0 < run.data.metrics["value.90d.interval_calibrated.coverage"] <= 1
    assert "customer value" in life["train"].output
    info = mlflow.models.get_model_info("models:/repurchase/1")
    assert info.signature is not None and info.saved_input_example_info is not None
    # The artifacts live in the workspace, beside the database.
    assert (life["home"] / "mlflow" / "artifacts").is_dir()


def test_evaluate_json_reports_every_scorer(life):
    r = life["evaluate"]
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for name in ("model", "rule", "bgnbd", "oracle"):
        assert METRICS <= out[name].keys(), name
    assert {"timing_mae_days", "interval_coverage"} <= out["model"].keys()
    assert out["horizon_days"] == 30 and out["n_test"] > 1000
    assert ".." in out["test_window"]
    assert out["model"]["roc_auc"] > out["bgnbd"]["roc_auc"]
    assert out["propensity"] == "xgboost" and out["selection"]["chosen"] == "hybrid"
    value = out["value"]["horizons"]["90d"]
    assert value["status"] == "ok" and value["buyers"] > 0
    models = value["models"]
    assert {"bgnbd_gamma_gamma", "cadence_value", "recent_spend"} <= models.keys()
    assert (
        models["cadence_value"]["realised_total"] == models["bgnbd_gamma_gamma"]["realised_total"]
    )


def test_first_challenger_passing_its_gates_becomes_champion(life):
    assert life["promote"].exit_code == 0, life["promote"].output
    client = _client(life["home"])
    champion = client.get_model_version_by_alias("repurchase", "champion")
    assert str(champion.version) == "1"
    assert "no champion yet" in champion.tags["promotion_reason"]


def test_score_writes_the_list_without_users_who_withdrew_consent(life):
    r = life["score"]
    assert r.exit_code == 0, r.output
    assert "high" in r.output and "expected within 30 days" in r.output.replace("orders ", "")
    folder = _latest(life["home"]).resolve()
    scored = pd.read_parquet(folder / "scores.parquet")
    csv = pd.read_csv(folder / "scores.csv", keep_default_na=False)
    assert len(scored) == len(csv) > 500
    assert scored.user_id.is_unique and csv.user_id.tolist() == scored.user_id.tolist()
    consents = pd.read_parquet(life["home"] / "raw" / "consents.parquet")
    as_of = scored.as_of.iloc[0]
    last = consents[consents.changed_at < as_of].sort_values("changed_at")
    last = last.groupby(["purpose", "user_id"]).granted.last()
    # Neither a shopper who withdrew consent to profiling nor one who withdrew consent to being
    # contacted is on the list.
    for purpose in ("profiling", "contact"):
        out = set(last[purpose].index[~last[purpose]])
        assert out and not out & set(scored.user_id), purpose
    p = scored.p_order_30d
    assert p.is_monotonic_decreasing and ((p > 0) & (p < 1)).all()
    assert scored.percentile.iloc[0] == 100 and scored.percentile.is_monotonic_decreasing
    assert (scored[scored.band == "high"].p_order_30d >= 0.6).all()
    assert (scored[scored.band == "low"].p_order_30d < 0.3).all()
    assert (scored.next_order_date_low <= scored.expected_next_order_date).all()
    assert (scored.expected_next_order_date <= scored.next_order_date_high).all()
    suggested = scored.band.isin(["high", "medium"])
    assert scored.contact_date[~suggested].isna().all()
    contact = pd.to_datetime(scored.contact_date[suggested])
    assert (contact >= as_of.tz_localize(None).floor("D")).all()
    assert scored.driver_1.str.endswith(("(raises)", "(lowers)")).all()
    assert (scored.model_version == "repurchase/1").all()
    # The drivers are the largest contributions, in order.
    assert (scored.driver_1_shap.abs() >= scored.driver_2_shap.abs()).all()
    # The spreadsheet's dates, as-of included, all read YYYY-MM-DD.
    for col in ("contact_date", "expected_next_order_date", "next_order_date_low", "as_of"):
        filled = csv[col][csv[col] != ""]
        assert filled.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), col
    assert (csv.as_of == f"{as_of:%Y-%m-%d}").all()
    schema = json.loads((folder / "schema.json").read_text())
    assert [c["name"] for c in schema["files"]["scores.csv"]] == csv.columns.tolist()
    assert schema["model"] == "repurchase/1" and schema["horizon_days"] == 30
    assert schema["rows"] == len(scored)
    assert f"as of {as_of:%Y-%m-%d}" in (folder / "README.md").read_text()
    # Expected spend: every listed shopper has one, within its interval's order, money to cents.
    spend = ["expected_spend_90d", "expected_spend_90d_low", "expected_spend_90d_high"]
    cols = csv.columns.tolist()
    assert cols[cols.index("next_order_date_high") + 1 : cols.index("driver_1")] == spend
    assert scored[spend].notna().all().all() and (scored.expected_spend_90d > 0).all()
    assert (scored.expected_spend_90d_low <= scored.expected_spend_90d_high).all()
    assert (csv[spend].astype(float).round(2) == csv[spend].astype(float)).all().all()
    assert schema["expected_spend"]["error"] is None
    assert "expected spend within 90 days" in r.output


def test_each_score_writes_a_new_folder_and_moves_latest(life):
    """Two runs, two folders; `latest` points at the second; the first is left byte for byte."""
    assert life["score_again"].exit_code == 0, life["score_again"].output
    first, second = life["lists_after_first"], life["lists_after_second"]
    runs = sorted(
        p.name for p in (life["home"] / "lists" / "repurchase").iterdir() if p.name != "latest"
    )
    assert len(runs) == 2
    for run in runs:
        date, stamp = run.split("_", 1)
        schema = json.loads((life["home"] / "lists/repurchase" / run / "schema.json").read_text())
        assert date == schema["as_of"]
        dt.datetime.strptime(stamp.split("-")[0], "%Y%m%dT%H%M%SZ")
    assert first["repurchase/latest"] == f"-> {runs[0]}"
    assert second["repurchase/latest"] == f"-> {runs[1]}"
    assert not _latest(life["home"]).readlink().is_absolute()
    kept = {k: v for k, v in first.items() if k != "repurchase/latest"}
    assert kept and {k: second[k] for k in kept} == kept
    assert not [p for p in (life["home"] / "lists").rglob(".*")]  # nothing staged left behind
    assert "online store" not in life["score_again"].output  # --no-online


def test_score_loads_the_latest_list_into_the_online_store(life):
    from cadence.features._store import online_features, open_store
    from cadence.features.feature_repo.definitions import published_scores_views

    assert "loaded into the online store" in life["score"].output
    home = life["home"]
    first = home / "lists" / "repurchase" / life["lists_after_first"]["repurchase/latest"][3:]
    scored = pd.read_parquet(first / "scores.parquet").head(3)
    online = online_features(
        open_store(home / "feast", "sqlite"),
        "repurchase_scores_v1",
        [{"user_id": u} for u in scored.user_id],
    )
    np.testing.assert_allclose(online.p_order_30d, scored.p_order_30d)
    assert online.band.tolist() == scored.band.tolist()
    # Every model's view reads its latest list through the link, so its definition stays put.
    views = {v.name: v for v in published_scores_views(home / "lists") if hasattr(v, "ttl")}
    assert set(views) == {"repurchase_scores", "repurchase_7d_scores"}
    path = views["repurchase_scores"].batch_source.path
    assert path == str((home / "lists").resolve() / "repurchase" / "latest" / "scores.parquet")
    assert "p_order_7d" in {f.name for f in views["repurchase_7d_scores"].schema}


def test_score_for_a_date_without_features_says_so(life):
    r = life["score_bad_date"]
    assert r.exit_code == 2 and "no features as of 2020-01-01" in r.output


def test_a_worse_challenger_is_refused_and_the_champion_stays(life):
    assert life["train_worse"].exit_code == 0, life["train_worse"].output
    r = life["promote_worse"]
    assert r.exit_code == 1, r.output
    # Rich wraps long lines at spaces; joined again, the gate's line reads exactly as printed.
    printed = " ".join(r.output.split())
    line = re.search(
        r"FAIL beats_champion: (ROC AUC (\d\.\d{4}) vs champion v1 (\d\.\d{4}) "
        r"on \S+ \(needs \+0\.002\))",
        printed,
    )
    assert line, r.output
    detail, challenger, champion = line.groups()
    assert float(challenger) < float(champion) + 0.002
    client = _client(life["home"])
    v2 = client.get_model_version("repurchase", "2")
    assert f"beats_champion: FAIL ({detail})" in v2.tags["promotion_refused_reason"]
    # Whichever of the two stumps and BG/NBD wins on the calibration slice is the challenger,
    # and training says which (on this world the stumps' log loss is sometimes the lower).
    kind = client.get_run(v2.run_id).data.params["propensity_model"]
    assert kind in ("btyd", "xgboost")
    said = "propensity: BG/NBD itself" in " ".join(life["train_worse"].output.split())
    assert said is (kind == "btyd")
    assert "promoted_at" not in v2.tags
    # Refused, it stayed challenger until the next training replaced it.
    assert client.get_model_version("repurchase", "3").tags["previous_champion"] == "1"


def test_rollback_restores_the_previous_champion_with_its_reason(life):
    assert life["promote_third"].exit_code == 0, life["promote_third"].output
    assert life["rollback"].exit_code == 0, life["rollback"].output
    client = _client(life["home"])
    assert str(client.get_model_version_by_alias("repurchase", "champion").version) == "1"
    v3 = client.get_model_version("repurchase", "3")
    assert v3.tags["rollback_reason"] == "bad week"
    assert v3.tags["promotion_reason"].startswith("retrain")
    r = life["rollback_again"]
    assert r.exit_code == 2 and "first champion" in r.output


def test_orders_only_import_trains_promotes_and_scores(model_home, tmp_path):
    """A shop's own order log, with its own column names, end to end."""
    orders = pd.read_parquet(model_home / "raw" / "orders.parquet")
    log = tmp_path / "shop.csv"
    orders.rename(columns={"user_id": "Kunde", "ordered_at": "Zeit", "amount": "Betrag"})[
        ["Kunde", "Zeit", "Betrag"]
    ].to_csv(log, index=False)
    # An order log alone gives a thinner model whose calibration on ~5,000 test rows is noisier.
    home, conf = tmp_path / "home", _conf(tmp_path / "conf", **{"promotion.max_ece": 0.1})
    steps = [
        ("data", "import-orders", str(log), "--customer", "Kunde", "--timestamp", "Zeit")
        + ("--amount", "Betrag"),
        ("features", "build"),
        # An orders-only build has fewer trend features than the catalogue declares; the
        # Feast views must declare what was built, or materialising fails.
        ("features", "apply"),
        ("features", "materialize"),
        ("train", "repurchase"),
        ("promote", "repurchase"),
        ("score",),
    ]
    for args in steps:
        r = _run(home, conf, *args)
        assert r.exit_code == 0, f"{args}: {r.output}"
    assert "no consent log" in r.output
    # An order log has no users table: nothing to group by, said, and never a PASS.
    r = _run(home, conf, "audit")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("audit repurchase v1: WARN")
    # The promotion's gate audited v1 first; `cadence audit` keeps a second report.
    first, run = sorted((home / "reports" / "audits" / "repurchase" / "v1").iterdir())
    html = (run / "audit.html").read_text()
    assert html.count("Not audited: the data has no users table.") == 4
    scored = pd.read_parquet(_latest(home) / "scores.parquet")
    assert len(scored) > 500 and scored.band.isin(["low", "medium", "high"]).all()
    evaluation = json.loads(_run(home, conf, "evaluate", "repurchase", "--json").output)
    assert "oracle" not in evaluation
    assert evaluation["model"]["roc_auc"] > evaluation["bgnbd"]["roc_auc"] - 0.02
    value = evaluation["value"]["horizons"]["90d"]
    assert value["status"] == "ok" and value["models"]["cadence_value"]["mae"] > 0
    readme = (_latest(home) / "README.md").read_text()
    assert "Expected spend (`expected_spend_90d`)" in readme
    assert scored.expected_spend_90d.notna().all()
    # The merge service on the imported log: offers from its scores, and what it cannot do
    # without nodes, waves and shipments (or a simulated world) said plainly.
    _service_on_an_imported_log(home, conf, scored)


def _service_on_an_imported_log(home: Path, conf: Path, scored: pd.DataFrame) -> None:
    from fastapi.testclient import TestClient

    from cadence.flows.settings import Settings
    from cadence.flows.steps.serving import build_service
    from cadence.serving.main import create_app

    key = _run(home, conf, "keys", "create", "--role", "service").output.split()[-1]
    settings = Settings(home=home, conf=conf, mlflow_tracking_uri=None)
    service = build_service(settings, settings.decisions(), today="scores")
    user = scored.sort_values("p_order_30d").user_id.iloc[-1]
    with TestClient(create_app(service)) as client:
        got = client.get(f"/v1/users/{user}/offer", headers={"X-API-Key": key})
        assert got.status_code == 200 and got.json()["reason"] in (None, "not_due"), got.text
        r = client.post(
            "/v1/consolidations", json={"ship_date": "2025-08-01"}, headers={"X-API-Key": key}
        )
        assert r.status_code == 409 and "no nodes, dispatch_waves, shipments" in r.text
        order = {
            "order_id": 1,
            "destination": {"city": "x"},
            "lines": [{"sku": "a", "quantity": 1}],
        }
        r = client.post("/v1/routes", json=order, headers={"X-API-Key": key})
        assert r.status_code == 409 and "which an order log alone does not have" in r.text, r.text
        r = client.get("/v1/orders/1/eta", headers={"X-API-Key": key})
        assert r.status_code == 404
    service.engine.dispose()
    r = _run(home, conf, "consolidate", "--date", "2025-08-01")
    assert r.exit_code == 2 and "dispatch waves and shipment history" in r.output
    r = _run(home, conf, "merge", "simulate", "--days", "14")
    assert r.exit_code == 2 and "imported order log, which cannot answer offers" in r.output
    # Routing learns from nodes, stock and parcels; an order log has none of them.
    for args in (("train", "routing"), ("route", "evaluate", "--days", "3")):
        r = _run(home, conf, *args)
        assert r.exit_code == 2 and "which an order log alone does not have" in r.output, args
    r = _run(home, conf, "route", "stock")
    assert r.exit_code == 2 and "no inventory table in the data" in r.output, r.output


def test_the_7_day_horizon_is_a_registered_model_of_its_own(life):
    assert life["train_7d"].exit_code == 0, life["train_7d"].output
    client = _client(life["home"])
    v = client.get_model_version("repurchase-7d", "1")
    assert client.get_run(v.run_id).data.params["horizon_days"] == "7"
    assert str(client.get_model_version_by_alias("repurchase", "champion").version) == "1"


def test_the_7_day_model_is_promoted_evaluated_and_scored_apart(life):
    assert life["promote_7d"].exit_code == 0, life["promote_7d"].output
    client = _client(life["home"])
    assert client.get_model_version_by_alias("repurchase-7d", "champion") is not None
    r = life["score_7d"]
    assert r.exit_code == 0, r.output
    assert "within 7 days" in r.output
    scored = pd.read_parquet(_latest(life["home"], "repurchase-7d") / "scores.parquet")
    assert scored.model_version.str.startswith("repurchase-7d/").all()
    assert "p_order_7d" in scored and "p_order_30d" not in scored
    evaluation = json.loads(life["evaluate_7d"].output)
    assert evaluation["horizon_days"] == 7
    r = life["horizon_14"]
    assert r.exit_code == 2 and "--horizon 14: not a configured horizon (7, 30" in r.output


def test_the_service_offers_from_the_published_list_with_a_key_from_the_cli(life):
    """After the pipeline's steps: `cadence keys create` makes a key (its last word), and the
    service built over the workspace reads the champion's list from the online store."""
    from fastapi.testclient import TestClient

    from cadence.flows.settings import Settings
    from cadence.flows.steps.serving import build_service
    from cadence.serving.main import create_app

    home = life["home"]
    conf = _conf(home.parent / f"{home.name}-serve")
    made = _run(home, conf, "keys", "create", "--role", "service")
    assert made.exit_code == 0, made.output
    key = made.output.split()[-1]
    refused = _run(home, conf, "keys", "create", "--role", "owner")
    assert refused.exit_code == 2 and "role 'owner'" in refused.output
    settings = Settings(home=home, conf=conf, mlflow_tracking_uri=None)
    service = build_service(settings, settings.decisions(), today="scores")
    scored = pd.read_parquet(home / "lists" / "repurchase" / "latest" / "scores.parquet")
    horizon = (scored.as_of.iloc[0] + pd.Timedelta(days=14)).date()
    expected = pd.to_datetime(scored.expected_next_order_date).dt.date
    due = scored[(scored.p_order_30d >= 0.3) & (expected <= horizon)]
    with TestClient(create_app(service)) as client:
        assert client.get("/readyz").json()["checks"]["champion"].startswith("v")
        got = client.get(f"/v1/users/{due.user_id.iloc[0]}/offer", headers={"X-API-Key": key})
        assert got.status_code == 200 and got.json()["offer"] is not None, got.text
        low = scored[scored.p_order_30d < 0.3].user_id.iloc[0]
        got = client.get(f"/v1/users/{low}/offer", headers={"X-API-Key": key})
        assert got.json()["reason"] == "below_threshold"
        # An opt-out drops the shopper from the next list.
        gone = due.user_id.iloc[1]
        r = client.post(
            f"/v1/users/{gone}/profiling-opt-out",
            json={"channel": "app"},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 200
    service.engine.dispose()
    # The day's plan from the command line: no orders were placed, so an empty plan.
    planned = _run(home, conf, "consolidate", "--date", str(horizon), "--json")
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.output)["merged"]["orders"] == 0
    assert _run(home, conf, "score", "--no-online").exit_code == 0
    rescored = pd.read_parquet(home / "lists" / "repurchase" / "latest" / "scores.parquet")
    assert gone not in set(rescored.user_id) and len(rescored) == len(scored) - 1


def test_a_simulated_merge_campaign_reads_out_merged_against_unmerged(life):
    home = life["home"]
    conf = _conf(home.parent / f"{home.name}-merge")
    r = _run(home, conf, "merge", "simulate", "--days", "21", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["merged_without_confirmation"] == 0
    assert out["offers"]["sent"] > 0 and out["shoppers"]["treatment"] > 0
    b, m = out["baseline"], out["merged"]
    assert m["orders"] == b["orders"] > 0
    assert m["parcels"] <= b["parcels"] and m["batches"] <= b["batches"]
    for key in ("orders_per_shopper", "cost_per_order"):
        lo, hi = out["ab"][key]["interval"]
        assert lo <= out["ab"][key]["difference"] <= hi
    # The table `merge simulate` prints without --json, from the same read-out.
    from rich.console import Console

    from cadence.cli import serving as cli_serving

    console = Console(record=True, width=120)
    original, cli_serving.console = cli_serving.console, console
    try:
        cli_serving.render_campaign(out)
    finally:
        cli_serving.console = original
    printed = " ".join(console.export_text().split())  # as one line, whatever the wrapping
    assert "merged without confirmation: 0" in printed and "batches per node day" in printed
    assert _run(home, conf, "merge", "simulate", "--days", "999").exit_code == 2
