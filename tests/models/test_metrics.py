from __future__ import annotations

import numpy as np
import pytest

from cadence.models._metrics import classification_metrics, ece, gain_curve, lift_top_decile

pytestmark = pytest.mark.unit


def test_a_calibrated_score_has_small_ece_and_a_shifted_one_does_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    y = rng.uniform(0, 1, p.size) < p
    assert ece(y, p) < 0.01
    assert ece(y, np.clip(p + 0.2, 0, 1)) > 0.15


def test_lift_and_gain_reward_ranking_positives_first():
    y = np.array([1] * 10 + [0] * 90)
    perfect = np.linspace(1, 0, 100)
    assert lift_top_decile(y, perfect) == pytest.approx(10.0)
    assert lift_top_decile(y, perfect[::-1]) == 0.0
    assert gain_curve(y, perfect, points=10)[0] == (0.1, 1.0)
    m = classification_metrics(y, perfect)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == pytest.approx(1.0)
