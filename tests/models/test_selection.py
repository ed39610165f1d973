"""Model selection that admits defeat: where the XGBoost hybrid does not beat BG/NBD on the
calibration slice, the challenger is BG/NBD itself, with the same interface and list columns."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from cadence.models._model_code import FILES, btyd_margin
from cadence.models._registry import CHAMPION, configure, load, log_and_register
from cadence.models._score import write_list
from cadence.models._train import Trained, fit
from tests.models._synthetic import replenishment_rows
from tests.models.test_score import _info, _score

pytestmark = pytest.mark.model

BTYD = "btyd_orders_30d"


def _rows(signal: float, seed: int = 5) -> tuple[pd.DataFrame, object, list[str]]:
    """Replenishment rows with a BG/NBD expected-orders column: `signal` of it follows the
    shopper's true wait (the rest is noise)."""
    rows, split, features = replenishment_rows({"coffee": (0.5, 1.0)}, users=300, seed=seed)
    rng = np.random.default_rng(seed)
    truth = np.clip(30.0 / rows.days_to_next.to_numpy(), 0.0, 5.0)
    noise = rng.gamma(1.0, 0.5, len(rows))
    rows[BTYD] = signal * truth + (1 - signal) * noise
    return rows, split, [*features, BTYD]


def _fit(rows, split, features, *, select: bool = True, **propensity) -> Trained:
    return fit(
        rows,
        features,
        split,
        n_jobs=1,
        propensity={"n_estimators": 60, **propensity},
        timing={"n_estimators": 20},
        select=select,
    )


@pytest.fixture(scope="module")
def lost() -> tuple[Trained, pd.DataFrame]:
    """A hybrid held to one stump, against a BG/NBD column that tracks the truth."""
    rows, split, features = _rows(signal=0.9)
    return _fit(rows, split, features, n_estimators=1, max_depth=1), rows


def test_a_hybrid_that_does_not_beat_bgnbd_gives_way_to_it(lost):
    trained, rows = lost
    sel = trained.selection
    assert trained.propensity.kind == "btyd" and sel["chosen"] == "btyd"
    assert sel["hybrid"]["roc_auc"] < sel["btyd"]["roc_auc"]
    assert "did not beat BG/NBD" in sel["reason"]
    assert f"{sel['btyd']['roc_auc']:.4f}" in sel["reason"]
    # The chosen model's probability is BG/NBD's log-odds under the chosen calibration: it
    # ranks the test rows exactly as the column does.
    test = rows[rows.slice == "test"]
    p = trained.predict(test).probability.to_numpy()
    order = np.argsort(btyd_margin(test[BTYD].to_numpy()), kind="stable")
    assert (np.diff(p[order]) >= -1e-12).all()
    assert 0 < p.min() and p.max() < 1


def test_a_hybrid_that_beats_bgnbd_is_kept_and_the_run_says_why():
    rows, split, features = _rows(signal=0.0)  # the column is noise
    trained = _fit(rows, split, features)
    sel = trained.selection
    assert trained.propensity.kind == "xgboost" and sel["chosen"] == "hybrid"
    assert sel["hybrid"]["cv_log_loss"] < sel["btyd"]["cv_log_loss"]
    assert sel["hybrid"]["roc_auc"] >= sel["btyd"]["roc_auc"]
    assert "beat BG/NBD" in sel["reason"] and "did not" not in sel["reason"]


def test_without_the_btyd_family_the_hybrid_stays_and_the_reason_says_so():
    rows, split, features = _rows(signal=0.9)
    trained = _fit(rows, split, [f for f in features if f != BTYD], n_estimators=1)
    assert trained.propensity.kind == "xgboost"
    assert trained.selection["chosen"] == "hybrid"
    assert BTYD in trained.selection["reason"]


def test_selection_can_be_turned_off():
    rows, split, features = _rows(signal=0.9)
    trained = fit(rows, features, split, n_jobs=1, propensity={"n_estimators": 1}, select=False)
    assert trained.propensity.kind == "xgboost" and trained.selection is None


def test_bgnbd_as_challenger_registers_loads_and_lists_like_the_hybrid(lost, tmp_path):
    trained, rows = lost
    test = rows[rows.slice == "test"]
    features = trained.features
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        experiment = configure(tmp_path, None)
        _, version = log_and_register(
            trained,
            {"model": {"roc_auc": 0.7}},
            name="repurchase",
            experiment_id=experiment,
            params={"seed": 0},
            tags={"horizon_days": "30"},
            example=rows[features].head(5).astype("float64"),
            figures={},
            importances=trained.propensity.importances(),
            curves={},
        )
        mlflow.MlflowClient().set_registered_model_alias("repurchase", CHAMPION, version)
        local = Path(mlflow.artifacts.download_artifacts(f"models:/repurchase@{CHAMPION}"))
        files = {p.name for p in (local / "artifacts").iterdir()}
        assert FILES["propensity"] not in files and FILES["timing"] in files
        settings = json.loads((local / "artifacts/settings.json").read_text())
        assert settings["propensity_kind"] == "btyd" and settings["btyd_feature"] == BTYD
        assert settings["selection"]["chosen"] == "btyd"
        loaded = load(f"models:/repurchase@{CHAMPION}")
        served = mlflow.pyfunc.load_model(f"models:/repurchase@{CHAMPION}").predict(
            test[features].astype("float64")
        )
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert loaded.propensity.kind == "btyd" and loaded.selection == trained.selection
    pd.testing.assert_frame_equal(loaded.predict(test), trained.predict(test))
    pd.testing.assert_frame_equal(served, trained.predict(test[features]), check_dtype=False)

    hybrid = _fit(rows, trained.split, features, select=False)
    frame = test[test.snapshot_at == test.snapshot_at.max()]
    ours, theirs = _score(loaded, frame), _score(hybrid, frame)
    assert list(ours.columns) == list(theirs.columns)
    # One input moves BG/NBD's score, so one driver, exactly its SHAP value; no others.
    moved = ours.driver_1_shap != 0
    assert moved.mean() > 0.9
    assert (ours.driver_1_feature[moved] == BTYD).all()
    assert ours.driver_1[moved].str.contains("raises|lowers").all()
    assert (ours.driver_2 == "").all() and ours.driver_2_feature.isna().all()
    assert ours.driver_3_value.isna().all()
    # The list's README and schema say which model scored it, and why.
    folder = tmp_path / "list"
    folder.mkdir()
    reason = trained.selection["reason"]
    write_list(ours, folder, _info(ours, propensity="btyd", selection_reason=reason))
    readme = (folder / "README.md").read_text()
    assert "the probability is BG/NBD's" in readme and reason in readme
    assert "each shopper has one driver" in readme
    schema = json.loads((folder / "schema.json").read_text())
    assert schema["propensity"] == "btyd" and schema["selection_reason"] == reason
