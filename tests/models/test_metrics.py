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


def _clustered(customers: int, rows_each: int, lead: float, seed: int):
    """Labels and two scores for `customers` shoppers seen `rows_each` times: a shopper's
    propensity is shared by their rows; `a` sees it more sharply than `b` by `lead`."""
    rng = np.random.default_rng(seed)
    who = np.repeat(np.arange(customers), rows_each)
    z = rng.normal(size=customers)[who]
    y = rng.uniform(size=who.size) < 1 / (1 + np.exp(-(z - 1)))
    a = z + rng.normal(scale=1.0, size=who.size)
    b = z + rng.normal(scale=1.0 + lead, size=who.size)
    return y.astype(int), {"model": a, "bgnbd": b}, who


def test_weighted_auc_and_ece_equal_the_plain_ones_and_sklearn_with_weights():
    from sklearn.metrics import roc_auc_score

    from cadence.models._uncertainty import weighted_auc, weighted_ece

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    p = np.round(rng.uniform(size=2000) * 0.5 + 0.4 * y, 2)  # ties on purpose
    w = rng.integers(0, 4, (3, 2000)).astype(float)
    assert weighted_auc(y, p, np.ones((1, 2000)))[0] == pytest.approx(roc_auc_score(y, p))
    for row in w:
        assert weighted_auc(y, p, row[None])[0] == pytest.approx(
            roc_auc_score(y, p, sample_weight=row)
        )
    assert weighted_ece(y, p, np.ones((1, 2000)))[0] == pytest.approx(ece(y, p))
    # Doubling every row's weight is the same data: the ECE does not move.
    assert weighted_ece(y, p, 2 * w)[1] == pytest.approx(weighted_ece(y, p, w)[1])
    assert np.isnan(weighted_auc(np.ones(5, int), np.arange(5.0), np.ones((1, 5)))[0])


def test_the_paired_interval_covers_a_known_difference_and_is_not_fooled_by_none():
    """Over repeated simulations the 95% interval of the AUC difference holds the true
    difference (taken from one very large draw) in most of them; with equal scorers it holds 0."""
    from cadence.models._uncertainty import paired_bootstrap, weighted_auc

    y, s, _ = _clustered(100_000, 1, 0.5, seed=99)
    one = np.ones((1, y.size))
    truth = weighted_auc(y, s["model"], one)[0] - weighted_auc(y, s["bgnbd"], one)[0]
    assert truth > 0.02  # the premise: there is a difference to find
    covered = 0
    for seed in range(20):
        y, s, who = _clustered(400, 3, 0.5, seed=seed)
        d = paired_bootstrap(y, s, who, resamples=200, seed=seed)["roc_auc_difference"]
        covered += d["model-bgnbd"]["low"] <= truth <= d["model-bgnbd"]["high"]
    assert covered >= 16, covered  # 95% nominal; 16 of 20 is below it by chance < 2%
    y, s, who = _clustered(400, 3, 0.0, seed=7)
    same = paired_bootstrap(y, {"model": s["model"], "bgnbd": s["model"]}, who, seed=7)
    assert same["roc_auc_difference"]["model-bgnbd"] == {"estimate": 0, "low": 0, "high": 0}


def test_fewer_customers_give_a_wider_interval_and_rows_of_one_customer_go_together():
    from cadence.models._uncertainty import paired_bootstrap

    def width(customers: int, rows_each: int, clustered: bool) -> float:
        y, s, who = _clustered(customers, rows_each, 0.3, seed=3)
        ids = who if clustered else np.arange(who.size)
        d = paired_bootstrap(y, s, ids, resamples=200, seed=0)["roc_auc"]["model"]
        return d["high"] - d["low"]

    assert width(300, 4, True) > 1.5 * width(3000, 4, True)
    # Four rows of one shopper are not four shoppers: resampling rows understates the width.
    assert width(1000, 4, True) > 1.15 * width(1000, 4, False)


def test_the_bootstrap_is_repeatable_with_its_seed():
    from cadence.models._uncertainty import paired_bootstrap

    y, s, who = _clustered(300, 2, 0.3, seed=5)
    a = paired_bootstrap(y, s, who, resamples=50, seed=11)
    assert a == paired_bootstrap(y, s, who, resamples=50, seed=11)
    assert a != paired_bootstrap(y, s, who, resamples=50, seed=12)
    assert a["customers"] == 300 and a["resamples"] == 50
    assert a["ece"]["model"]["low"] <= a["ece"]["model"]["high"]


def test_segments_report_metrics_or_say_why_not():
    from cadence.models._uncertainty import segment_metrics

    y, s, _ = _clustered(600, 1, 0.3, seed=2)
    s = {k: 1 / (1 + np.exp(-v)) for k, v in s.items()}
    rows = np.arange(y.size)
    out = segment_metrics(
        y,
        s,
        {
            "half": rows < 300,
            "tiny": rows < 20,
            "no_buyer": y == 0,
            "empty": np.zeros(y.size, bool),
        },
    )
    assert out["half"]["n"] == 300 and out["half"]["buyers"] == int(y[:300].sum())
    assert 0.5 < out["half"]["model"]["roc_auc"] <= 1 and out["half"]["bgnbd"]["ece"] >= 0
    assert "fewer than 50" in out["tiny"]["note"] and "model" not in out["tiny"]
    assert out["no_buyer"]["buyers"] == 0 and "0 buyers" in out["no_buyer"]["note"]
    assert out["empty"] == {"n": 0, "buyers": 0, "note": "0 rows, fewer than 50: no metrics"}


def test_segment_masks_follow_orders_and_recency_as_of_the_snapshot():
    import pandas as pd

    from cadence.models._train import customer_segments

    rows = pd.DataFrame(
        {"orders_all": [0, 1, 2, 5, np.nan], "days_since_last_order": [np.nan, 10, 90, 91, 400]}
    )
    seg = {k: v.tolist() for k, v in customer_segments(rows).items()}
    assert seg["one_order"] == [False, True, False, False, False]
    assert seg["repeat"] == [False, False, True, True, False]
    assert seg["active_90d"] == [False, True, True, False, False]
    assert seg["lapsed_90d"] == [False, False, False, True, True]
    assert customer_segments(rows[["orders_all"]]).keys() == {"one_order", "repeat"}


def test_segments_and_intervals_become_valid_flat_metric_names():
    import re

    from cadence.models._uncertainty import metric_groups, paired_bootstrap, segment_metrics

    y, s, who = _clustered(200, 2, 0.3, seed=4)
    report = {
        "model": {"roc_auc": 0.8},
        "segments": segment_metrics(y, s, {"all": np.ones(y.size, bool)}),
        "intervals": paired_bootstrap(y, s, who, resamples=20),
    }
    groups = metric_groups(report)
    names = [f"{g}.{k}" for g, flat in groups.items() for k in flat]
    assert "segment.all.model.roc_auc" in names and "segment.all.n" in names
    assert "interval.roc_auc_difference.model-bgnbd.low" in names
    assert all(re.fullmatch(r"[\w.\- /]+", n) for n in names), names
