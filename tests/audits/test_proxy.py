"""Proxy risk finds the feature that encodes a sensitive attribute, and finds none in noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.audits import proxy_risk

pytestmark = pytest.mark.unit


def test_an_encoded_attribute_is_found_and_named():
    rng = np.random.default_rng(0)
    n = 3000
    gender = pd.Series(rng.choice(["female", "male"], n))
    features = pd.DataFrame(
        {
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "carries_gender": (gender == "male").to_numpy() + rng.normal(0, 0.5, n),
        }
    )
    band = pd.Series(rng.choice(["18-24", "25-34", "35-44"], n))
    out = proxy_risk(features, {"gender": gender, "age_band": band}, n_jobs=1)
    assert out["gender"]["roc_auc"] > 0.8
    assert out["gender"]["top_features"][0]["feature"] == "carries_gender"
    # Nothing in the features says anything about age band.
    assert abs(out["age_band"]["roc_auc"] - 0.5) < 0.05
    assert out["age_band"]["values"] == ["18-24", "25-34", "35-44"]


def test_unknown_and_rare_values_are_left_out_and_said():
    rng = np.random.default_rng(1)
    n = 600
    labels = pd.Series(rng.choice(["female", "male"], n))
    labels.iloc[:50] = "unknown"
    labels.iloc[50:52] = "undisclosed"  # two rows: too few for three folds
    out = proxy_risk(pd.DataFrame({"x": rng.normal(size=n)}), {"gender": labels}, n_jobs=1)
    assert out["gender"]["n"] == n - 52
    assert out["gender"]["left_out"] == ["undisclosed"]
    one = proxy_risk(pd.DataFrame({"x": rng.normal(size=n)}), {"g": pd.Series(["a"] * n)})
    assert "nothing to predict" in one["g"]["note"]
