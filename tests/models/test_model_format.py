"""The registered model's format: open artifacts and code that needs no `cadence`.

A model is logged, registered and made champion on a SQLite store; loading it back, in this
process or in one where the project cannot be imported at all, must predict what the model in
memory predicts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from sklearn.isotonic import IsotonicRegression

from cadence.models._model_code import CALIBRATIONS, FILES, calibrated, read
from cadence.models._registry import CHAMPION, configure, load, log_and_register
from cadence.models._split import TimeSplit
from cadence.models._train import Trained, fit, with_due_dates
from tests.models._synthetic import replenishment_rows

pytestmark = pytest.mark.model

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
NAME = "repurchase"


# Shoppers' replenishments: the share of rows buying each, and its gap relative to their own.
CATEGORIES = {"infant_formula": (0.4, 1.0), "coffee": (0.3, 1.1)}


def _rows() -> tuple[pd.DataFrame, TimeSplit]:
    rows, split, _ = replenishment_rows(CATEGORIES, users=250, seed=3)
    return rows, split


FEATURES = replenishment_rows(CATEGORIES, users=1)[2]


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> dict:
    """A small model, registered as `repurchase` and made champion on a SQLite store."""
    home = tmp_path_factory.mktemp("format-home")
    rows, split = _rows()
    trained = fit(
        rows,
        FEATURES,
        split,
        n_jobs=1,
        propensity={
            # A fast learner, so early stopping keeps a few of the 40 trees.
            "n_estimators": 40,
            "learning_rate": 0.5,
            "early_stopping_rounds": 5,
            "monotone": {"days_since_last_order": -1, "orders_7d": 1},
        },
        timing={"n_estimators": 30},
    )
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    experiment = configure(home, None)
    try:
        _, version = log_and_register(
            trained,
            {"model": {"roc_auc": 0.7}},
            name=NAME,
            experiment_id=experiment,
            params={"seed": 0},
            tags={"horizon_days": "30"},
            example=rows[FEATURES].head(5).astype("float64"),
            figures={},
            importances=trained.propensity.importances(),
            curves={},
        )
        MlflowClient().set_registered_model_alias(NAME, CHAMPION, version)
        yield {
            "home": home,
            "uri": mlflow.get_tracking_uri(),
            "trained": trained,
            "test": rows[rows.slice == "test"],
        }
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def test_isotonic_prediction_is_interpolation_between_its_thresholds():
    rng = np.random.default_rng(0)
    raw = rng.random(2000)
    y = (rng.random(2000) < raw**2).astype(int)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    # Inside, between and beyond the thresholds (the calibration reads the booster's log-odds).
    p = np.concatenate([rng.uniform(1e-6, 1 - 1e-6, 5000), iso.X_thresholds_])
    expected = iso.predict(p)
    np.testing.assert_allclose(np.interp(p, iso.X_thresholds_, iso.y_thresholds_), expected)
    stored = {"method": "isotonic", "x": iso.X_thresholds_, "y": iso.y_thresholds_}
    np.testing.assert_allclose(calibrated(np.log(p / (1 - p)), stored), expected, atol=1e-9)


def test_due_dates_leave_out_replenishments_long_overdue():
    frame = pd.DataFrame(
        {
            "infant_formula_gap_mean": [30.0, 30.0, np.nan],
            "infant_formula_days_since": [25.0, 45.0, np.nan],
            "coffee_gap_mean": [20.0, 20.0, np.nan],
            "coffee_days_since": [28.0, 5.0, np.nan],
            "gap_mean": [12.0, 12.0, 12.0],
            "days_since_last_order": [2.0, 5.0, 20.0],
        }
    )
    out = with_due_dates(frame)
    assert out.infant_formula_due_in_days.tolist()[:2] == [5.0, -15.0]
    assert out.coffee_due_in_days.tolist()[:2] == [-8.0, 15.0]
    # -8 is overdue but not by more than 10 days, -15 is; a shopper with no cycle has none.
    assert out.next_due_in_days.tolist()[:2] == [-8.0, 15.0]
    assert np.isnan(out.next_due_in_days.iloc[2])
    assert out.gap_due_in_days.tolist() == [10.0, 7.0, -8.0]
    pd.testing.assert_frame_equal(out[frame.columns], frame)  # the input is left as it was


def test_stored_model_holds_no_pickle_and_requires_no_cadence(registered):
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@{CHAMPION}"))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {
        "artifacts/propensity.ubj",
        "artifacts/timing.ubj",
        "artifacts/calibration.json",
        "artifacts/settings.json",
        "_model_code.py",
    } <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    pyfunc = mlflow.models.Model.load(str(local)).flavors["python_function"]
    assert pyfunc["model_code_path"].endswith("_model_code.py") and "python_model" not in pyfunc
    requirements = (local / "requirements.txt").read_text()
    assert "cadence" not in requirements.lower()
    assert "xgboost-cpu==" in requirements
    code = (local / "_model_code.py").read_text()
    assert "import cadence" not in code and "from cadence" not in code
    settings = json.loads((local / "artifacts/settings.json").read_text())
    assert settings["features"] == FEATURES and settings["horizon_days"] == 30


def test_loaded_model_is_the_trained_model(registered):
    trained: Trained = registered["trained"]
    test = registered["test"]
    loaded = load(f"models:/{NAME}@{CHAMPION}")
    assert isinstance(loaded, Trained)
    pd.testing.assert_frame_equal(loaded.predict(test), trained.predict(test), rtol=1e-6)
    assert loaded.features == trained.features and loaded.horizon_days == 30
    for name in ("train", "calibrate", "test"):
        assert loaded.split.window(name) == trained.split.window(name)
        assert getattr(loaded.split, name) == getattr(trained.split, name)
    assert set(loaded.split.slice_of(test.snapshot_at)) == {"test"}
    assert loaded.propensity.n_jobs == 1 and loaded.propensity.n_estimators == 40
    # Early stopping: the stored booster holds the trees up to the best round, no more.
    best = trained.propensity.best_iteration_
    assert best + 1 < 40 and loaded.propensity.best_iteration_ == best
    assert loaded.propensity.model_.get_booster().num_boosted_rounds() == best + 1
    assert loaded.propensity.monotone == {"days_since_last_order": -1, "orders_7d": 1}
    assert loaded.timing.n_estimators == 30
    X = loaded.inputs(test.head(50))
    dm = loaded.matrix(X)
    pd.testing.assert_frame_equal(loaded.predict_inputs(X, dm), trained.predict_inputs(X))
    np.testing.assert_allclose(
        loaded.propensity.predict_proba(X), trained.propensity.predict_proba(X)
    )
    np.testing.assert_allclose(
        loaded.propensity.contributions(dm, exact=False),
        trained.propensity.contributions(X, exact=False),
        atol=1e-6,
    )
    pd.testing.assert_frame_equal(loaded.propensity.importances(), trained.propensity.importances())


def test_the_chosen_calibration_is_stored_and_reloads_identically(registered):
    trained: Trained = registered["trained"]
    chosen = trained.propensity.calibration_
    assert chosen["method"] in CALIBRATIONS
    assert set(chosen["cv_log_loss"]) == set(CALIBRATIONS)
    assert chosen["method"] == min(chosen["cv_log_loss"], key=chosen["cv_log_loss"].get)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@{CHAMPION}"))
    stored = json.loads((local / "artifacts/calibration.json").read_text())
    assert stored == json.loads(json.dumps(chosen))
    loaded = load(f"models:/{NAME}@{CHAMPION}")
    assert loaded.propensity.calibration_ == stored
    X = trained.inputs(registered["test"])
    np.testing.assert_array_equal(
        loaded.propensity.predict_proba(X), trained.propensity.predict_proba(X)
    )


def test_a_model_stored_before_the_choice_still_loads_as_isotonic(registered, tmp_path):
    """Its calibration.json holds only the isotonic thresholds."""
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@{CHAMPION}"))
    paths = {name: str(local / "artifacts" / file) for name, file in FILES.items()}
    legacy = {"x": [0.05, 0.5, 0.95], "y": [0.0, 0.4, 1.0]}
    paths["calibration"] = str(tmp_path / "calibration.json")
    Path(paths["calibration"]).write_text(json.dumps(legacy))
    stored = read(paths)
    assert stored.calibration == {"method": "isotonic", **legacy}
    X = registered["trained"].inputs(registered["test"])
    margin = stored.propensity.predict(xgb.DMatrix(X), output_margin=True)
    p = calibrated(margin, stored.calibration)
    booster_p = 1 / (1 + np.exp(-margin.astype(float)))
    np.testing.assert_allclose(p, np.interp(booster_p, legacy["x"], legacy["y"]))


BLOCKED_RUN = """
import importlib.abc, sys

BLOCKED = {"cadence", "models", "features", "flows"}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"no module named {name!r} here", name=name)
        return None


sys.meta_path.insert(0, Blocker())
sys.path.insert(0, sys.argv[1])  # the training code, only under another name
try:
    import cadence
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("cadence was importable")

import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model("models:/repurchase@champion")
model.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
if loaded:
    raise SystemExit(f"imported {loaded}")
"""


def test_model_serves_where_the_project_cannot_be_imported(registered, tmp_path):
    trained: Trained = registered["trained"]
    test = registered["test"]
    shutil.copytree(MODELS_DIR, tmp_path / "renamed_models", ignore=shutil.ignore_patterns("*.pyc"))
    test[FEATURES].to_parquet(tmp_path / "inputs.parquet")
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered["uri"]}
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(BLOCKED_RUN),
            str(tmp_path),
            str(tmp_path / "inputs.parquet"),
            str(tmp_path / "out.parquet"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    served = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(
        served.reset_index(drop=True),
        trained.predict(test).reset_index(drop=True),
        rtol=1e-6,
    )
