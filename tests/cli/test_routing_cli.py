"""`cadence train / promote / rollback routing` and `cadence route evaluate` on a small world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cadence.cli.app import app

pytestmark = pytest.mark.e2e

runner = CliRunner()
CONF = Path(__file__).resolve().parents[2] / "conf"


def _conf(folder: Path, **routing) -> Path:
    """conf/ with routing.yaml sized for the model world: two held-out weeks, small boosters."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in CONF.glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    data = yaml.safe_load((folder / "routing.yaml").read_text())
    data["holdout_days"] = 14
    data["models"].update(n_estimators=80, n_jobs=1)
    # Two weeks of a small world leave groups of a few dozen orders; their next-day rates
    # swing too much for the default limit.
    data["promotion"]["max_next_day_drop"] = 0.5
    for key, value in routing.items():
        section, name = key.split(".")
        data[section][name] = value
    (folder / "routing.yaml").write_text(yaml.safe_dump(data))
    return folder


def _run(home: Path, conf: Path, *args: str):
    env = {"CADENCE_HOME": str(home), "CADENCE_CONF": str(conf), "MLFLOW_TRACKING_URI": ""}
    return runner.invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def routed(model_home, tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("routing-cli")
    for part in ("raw", "truth", "features"):
        shutil.copytree(model_home / part, home / part)
    conf = _conf(home.parent / f"{home.name}-conf")
    # A challenger that must cost at least a fifth less than the champion cannot pass.
    strict = _conf(home.parent / f"{home.name}-strict", **{"promotion.margin": -0.2})
    steps = {"home": home}
    steps["evaluate_first"] = _run(home, conf, "route", "evaluate", "--days", "2")
    steps["train"] = _run(home, conf, "train", "routing")
    steps["evaluate_wrong"] = _run(home, conf, "evaluate", "routing")
    steps["too_many_days"] = _run(home, conf, "route", "evaluate", "--days", "30")
    steps["evaluate"] = _run(home, conf, "route", "evaluate", "--days", "3", "--json")
    steps["table"] = _run(home, conf, "route", "evaluate", "--days", "2")
    steps["stock"] = _run(home, conf, "route", "stock")
    steps["stock_bad_date"] = _run(home, conf, "route", "stock", "--date", "2020-01-01")
    steps["service"] = _route_through_the_service(home, conf)
    steps["plan"] = _run(home, conf, "route", "plan", "--date", "2025-08-20", "--json")
    steps["plan_bad_date"] = _run(home, conf, "route", "plan", "--date", "20-08-2025")
    steps["plan_no_orders"] = _run(home, conf, "route", "plan", "--date", "2024-01-01")
    steps["forecast"] = _run(home, conf, "route", "forecast", "--days", "6", "--json")
    steps["promote"] = _run(home, conf, "promote", "routing")
    steps["train_again"] = _run(home, conf, "train", "routing")
    steps["promote_strict"] = _run(home, strict, "promote", "routing")
    steps["promote_again"] = _run(home, conf, "promote", "routing", "--reason", "weekly")
    steps["rollback"] = _run(home, conf, "rollback", "routing", "--reason", "bad week")
    return steps


def _route_through_the_service(home: Path, conf: Path) -> dict:
    """One order of a shopper's city, routed by the service built over the workspace (the
    stock view just loaded), and its ETA."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from cadence.flows.settings import Settings
    from cadence.flows.steps.serving import build_service, create_key
    from cadence.serving.main import create_app

    settings = Settings(home=home, conf=conf, mlflow_tracking_uri=None)
    inv = pd.read_parquet(home / "raw" / "inventory.parquet")
    last = inv[inv.date == inv.date.max()]
    sku = str(last.groupby("sku").on_hand.sum().idxmax())
    city = str(pd.read_parquet(home / "raw" / "users.parquet").city.iloc[0])
    key = create_key(settings, "service")
    service = build_service(settings, settings.decisions(), today=f"{inv.date.max():%Y-%m-%d}")
    body = {"order_id": 1, "destination": {"city": city}, "lines": [{"sku": sku, "quantity": 1}]}
    with TestClient(create_app(service)) as client:
        client.headers["X-API-Key"] = key
        routed = client.post("/v1/routes", json=body)
        eta = client.get("/v1/orders/1/eta")
        held = client.get("/v1/stock", params={"sku": sku, "limit": 1000})
    service.engine.dispose()
    return {"route": routed, "eta": eta, "stock": held}


def test_nothing_to_evaluate_before_training(routed):
    r = routed["evaluate_first"]
    assert r.exit_code == 2 and "run `cadence train routing` first" in r.output


def test_train_registers_a_challenger_and_reports_extrapolation(routed):
    r = routed["train"]
    assert r.exit_code == 0, r.output
    assert "registered routing v1 as challenger" in r.output
    assert "node chosen by the rule" in r.output
    r = routed["evaluate_wrong"]
    assert r.exit_code == 2 and "cadence route evaluate" in r.output
    r = routed["too_many_days"]
    assert r.exit_code == 2 and "held-out days only, 1 to 14" in r.output


def test_evaluate_reports_every_strategy_in_the_json_the_issue_names(routed):
    r = routed["evaluate"]
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["strategies"]) == {"nearest", "greedy", "optimal", "clairvoyant"}
    keys = {"cost_per_order", "next_day_rate", "mean_delivery_days", "split_rate"}
    keys |= {"capacity_violations", "orders"}
    for name, row in out["strategies"].items():
        assert keys <= set(row), name
        assert row["orders"] > 0 and row["stock_violations"] == 0
    for name in ("greedy", "optimal", "clairvoyant"):
        assert out["strategies"][name]["capacity_violations"] == 0
    assert out["strategies"]["nearest"]["cost_vs_nearest"] == 0
    assert out["strategies"]["clairvoyant"]["gap_to_clairvoyant"] == 0
    assert set(out["ab"]["arms"]) == {"nearest", "optimal"}
    lo, hi = out["ab"]["cost_per_order"]["ci95"]
    assert lo <= out["ab"]["cost_per_order"]["difference"] <= hi
    groups = {(g["attribute"], g["strategy"]) for g in out["audit"]["groups"]}
    assert ("gender", "optimal") in groups and ("region", "nearest") in groups
    assert out["extrapolation"] and all(e["options"] > 0 for e in out["extrapolation"])
    # Kept for reviewers and the fairness audit's routing section.
    saved = json.loads(Path(out["saved"]).read_text())
    assert saved["strategies"] == out["strategies"] and saved["days"] == out["days"]
    # The arrival windows span the 10% to 90% delivery quantiles; the replay says how they held.
    eta = out["eta"]
    assert eta["quantiles"] == [0.1, 0.9] and eta["parcels"] > 0
    assert 0.3 < eta["inside"] <= 1 and eta["inside"] + eta["early"] + eta["late"] == 1
    r = routed["table"]
    assert r.exit_code == 0, r.output
    assert "clairvoyant" in r.output and "A/B: orders randomised" in r.output
    assert "arrival windows" in r.output


def test_the_service_routes_an_order_on_the_loaded_stock_view(routed):
    r = routed["stock"]
    assert r.exit_code == 0 and "stock view set from the" in r.output, r.output
    r = routed["stock_bad_date"]
    assert r.exit_code == 2 and "no inventory snapshot that day" in r.output, r.output
    s = routed["service"]
    assert s["route"].status_code == 201, s["route"].text
    out = s["route"].json()
    (parcel,) = out["parcels"]
    assert out["model_version"].startswith("routing v") and parcel["window"]["from"]
    eta = s["eta"].json()
    assert eta["window"] == parcel["window"] and eta["calibration"]["inside"] > 0
    rows = [r for r in s["stock"].json()["rows"] if r["node_id"] == parcel["node_id"]]
    assert [r["reserved"] for r in rows] == [1]


def test_gates_promote_refuse_and_rollback(routed):
    r = routed["promote"]
    assert r.exit_code == 0, r.output
    assert "routing_cheaper" in r.output and "routing v1 is champion" in r.output
    assert routed["train_again"].exit_code == 0
    r = routed["promote_strict"]
    assert r.exit_code == 1 and "FAIL routing_cheaper" in r.output
    r = routed["promote_again"]
    assert r.exit_code == 0, r.output
    assert "routing v2 is champion" in r.output
    r = routed["rollback"]
    assert r.exit_code == 0 and "v2 -> v1" in r.output


def test_plan_writes_every_order_with_a_reason(routed):
    import pandas as pd

    r = routed["plan"]
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["stock_violations"] == 0 and out["capacity_violations"] == 0
    parquet, csv = (Path(f) for f in out["files"])
    assert parquet.name == "plan-2025-08-20.parquet" and csv.exists()
    plan = pd.read_parquet(parquet)
    assert plan.order_id.nunique() == out["orders"]
    assert plan.reason.str.len().gt(20).all()
    shipped = plan[plan.node_id != ""]
    assert len(shipped) == out["parcels"] and shipped.predicted_cost.gt(0).all()
    assert not list(parquet.parent.glob(".*.tmp"))
    r = routed["plan_bad_date"]
    assert r.exit_code == 2 and "expected YYYY-MM-DD" in r.output
    r = routed["plan_no_orders"]
    assert r.exit_code == 2 and "no shipped orders on that day" in r.output


def test_forecast_reports_its_error_and_what_transfers_saved(routed):
    r = routed["forecast"]
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    f = out["forecast"]
    assert f["horizon_days"] == 3 and f["forecast"]["origins"] == 2
    assert f["forecast"]["pairs"] == f["naive"]["pairs"] > 0
    p = out["prepositioning"]
    assert p["orders"] > 0 and p["transfer_cost"] >= 0
    assert p["net_saving"] == pytest.approx(p["shipping_saved"] - p["transfer_cost"], abs=0.02)
