"""Group metrics, gaps, intervals and checks on rows built here, against Fairlearn's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)

from cadence.audits import FAIL, PASS, WARN, AuditSettings, Limits, Scored, audit, groupings
from cadence.audits._fairness import Resample, audit_grouping, metric_frame, status

pytestmark = pytest.mark.unit


def _rows(n=6000, users=2000, shift=0.0, seed=1):
    """Scores and outcomes for three groups; group c's scores are raised by `shift` while its
    buying stays as calibrated, so `shift` plants both a parity and a calibration gap."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    truth = rng.beta(2, 5, n)
    y = (rng.random(n) < truth).astype(int)
    p = np.clip(truth + np.where(group == "c", shift, 0.0), 0, 1)
    return y, p, pd.Series(group), rng.integers(0, users, n)


def _one(y, p, g, users, *, threshold=0.3, resamples=300, min_group_shoppers=100):
    return audit_grouping(
        y,
        p,
        offered=p >= threshold,
        sensitive_features=g,
        resample=Resample.of(users, resamples, seed=0),
        min_shoppers=min_group_shoppers,
        limits=Limits(),
    )


def test_gaps_equal_fairlearns_own():
    y, p, g, users = _rows(shift=0.1)
    out = _one(y, p, g, users)
    chosen = p >= 0.3
    gaps = out["gaps"]
    assert gaps["demographic_parity_difference"]["estimate"] == pytest.approx(
        demographic_parity_difference(y, chosen, sensitive_features=g)
    )
    assert gaps["demographic_parity_ratio"]["estimate"] == pytest.approx(
        demographic_parity_ratio(y, chosen, sensitive_features=g)
    )
    assert gaps["equalized_odds_difference"]["estimate"] == pytest.approx(
        equalized_odds_difference(y, chosen, sensitive_features=g)
    )


def test_group_figures_are_metric_frames():
    y, p, g, users = _rows()
    frame = metric_frame(y, p, offered=p >= 0.3, sensitive_features=g).by_group["targeting"]
    out = {e["group"]: e for e in _one(y, p, g, users)["groups"]}
    for name, values in frame.items():
        assert out[name]["n"] == values[0]
        assert out[name]["selection_rate"] == pytest.approx(values[1])
        assert out[name]["roc_auc"] == pytest.approx(values[5])
        # The bootstrap's point estimate is the same figure, from counts.
        assert out[name]["intervals"]["selection_rate"]["estimate"] == pytest.approx(values[1])


def test_a_planted_gap_fails_and_its_absence_passes():
    y, p, g, users = _rows(shift=0.25)
    biased = {c["check"]: c["status"] for c in _one(y, p, g, users)["checks"]}
    assert biased == {"demographic_parity": FAIL, "equalized_odds": FAIL, "calibration": FAIL}
    y, p, g, users = _rows(shift=0.0)
    fair = {c["check"]: c["status"] for c in _one(y, p, g, users)["checks"]}
    assert fair == {"demographic_parity": PASS, "equalized_odds": PASS, "calibration": PASS}


def test_noise_alone_does_not_fail():
    """Many groups of a few hundred shoppers, all treated alike: the gaps between their rates
    are noise, which pushes a maximum minus a minimum apart; the checks must not call that a
    failure (the intervals correct for it)."""
    rng = np.random.default_rng(11)
    n, users = 40000, 4000
    user = rng.integers(0, users, n)
    g = pd.Series((user % 16).astype(str))  # a shopper's rows share a group
    truth = rng.beta(2, 5, n)
    y = (rng.random(n) < truth).astype(int)
    out = _one(y, truth, g, user, min_group_shoppers=200)
    assert FAIL not in {c["status"] for c in out["checks"]}
    for c in out["checks"]:
        assert c["low"] <= c["estimate"] <= c["high"]


def test_intervals_cover_the_estimate_and_shrink_with_data():
    small = _one(*_rows(n=3000, users=1000, shift=0.1))["gaps"]["demographic_parity_ratio"]
    large = _one(*_rows(n=30000, users=10000, shift=0.1))["gaps"]["demographic_parity_ratio"]
    for iv in (small, large):
        assert iv["low"] <= iv["estimate"] <= iv["high"]
    assert large["high"] - large["low"] < small["high"] - small["low"]


def test_customers_resample_together():
    """The same rows counted as one customer's many rows give a wider interval than as many
    customers' rows: a shopper's repeated rows are not independent evidence."""
    y, p, g, _ = _rows(n=6000, shift=0.1)
    # Each customer's rows share a group, as a shopper's rows do.
    codes = g.map({"a": 0, "b": 1, "c": 2}).to_numpy()
    clustered = codes * 1000 + np.arange(6000) % 200
    few = _one(y, p, g, clustered)["gaps"]["demographic_parity_ratio"]
    many = _one(y, p, g, np.arange(6000))["gaps"]["demographic_parity_ratio"]
    assert few["high"] - few["low"] > many["high"] - many["low"]


def test_status_reads_the_whole_interval():
    assert status({"low": 0.82, "high": 0.9}, 0.8, "at_least") == PASS
    assert status({"low": 0.78, "high": 0.9}, 0.8, "at_least") == WARN
    assert status({"low": 0.6, "high": 0.79}, 0.8, "at_least") == FAIL
    assert status({"low": 0.02, "high": 0.09}, 0.1, "at_most") == PASS
    assert status({"low": 0.08, "high": 0.12}, 0.1, "at_most") == WARN
    assert status({"low": 0.11, "high": 0.2}, 0.1, "at_most") == FAIL
    assert status({"low": None, "high": None}, 0.1, "at_most") == WARN


def test_small_groups_are_listed_not_dropped():
    y, p, g, users = _rows()
    g = g.copy()
    g.iloc[:40] = "rare"
    out = _one(y, p, g, users)
    rare = next(e for e in out["groups"] if e["group"] == "rare")
    assert rare == {
        "group": "rare",
        "n": 40,
        "shoppers": len(set(users[:40])),
        "buyers": int(y[:40].sum()),
        "too_small": True,
    }
    # ...and take no part in the gaps: the gap is the one over the three large groups.
    keep = (g != "rare").to_numpy()
    chosen = p >= 0.3
    assert out["gaps"]["demographic_parity_ratio"]["estimate"] == pytest.approx(
        demographic_parity_ratio(y[keep], chosen[keep], sensitive_features=g[keep])
    )


def test_one_group_cannot_be_judged():
    y, p, _, users = _rows()
    out = _one(y, p, pd.Series(["a"] * len(y)), users)
    assert out["gaps"] == {}
    assert {c["status"] for c in out["checks"]} == {WARN}


def _users(n):
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "gender": rng.choice(["female", "male"], n),
            "age_band": rng.choice(["18-24", "25-34", "35-44"], n),
            "city_tier": rng.integers(1, 4, n),
        }
    )


def test_shoppers_missing_from_users_form_an_unknown_group():
    users = _users(100)
    ids = pd.Series([f"u{i}" for i in range(95)] + ["x1", "x2", "x3", "x4", "x5"])
    got = groupings(users, ids, sensitive=["gender"], proxies=[], intersections=[])
    assert (got.labels["gender"] == "unknown").sum() == 5
    assert not got.missing


def test_a_missing_attribute_is_said_and_never_passes():
    """An imported order log has no users table: every grouping is missing, verdict WARN."""
    rng = np.random.default_rng(0)
    n = 3000
    ids = pd.Series([f"u{i % 1000}" for i in range(n)])
    truth = rng.beta(2, 5, n)
    scored = Scored(user_ids=ids, y=(rng.random(n) < truth).astype(int), p=truth)
    settings = AuditSettings(resamples=50)
    got = groupings(
        None,
        ids,
        sensitive=["gender", "age_band"],
        proxies=["region"],
        intersections=[["gender", "age_band"]],
    )
    doc = audit(scored, got, threshold=0.3, settings=settings)
    assert doc["verdict"] == WARN
    assert doc["targeting"]["sections"]["gender"]["missing"] == "the data has no users table"
    # A users table without the column: said by name.
    got = groupings(
        _users(1000).drop(columns="gender"),
        ids,
        sensitive=["gender", "age_band"],
        proxies=[],
        intersections=[],
    )
    doc = audit(scored, got, threshold=0.3, settings=settings)
    assert doc["targeting"]["sections"]["gender"]["missing"] == (
        "the users table has no column 'gender'"
    )
    assert doc["verdict"] != PASS


def test_proxies_are_checked_but_do_not_gate_by_default():
    n = 20000
    users = _users(5000)
    ids = pd.Series([f"u{i % 5000}" for i in range(n)])
    tier = ids.map(users.set_index("user_id").city_tier).to_numpy()
    rng = np.random.default_rng(5)
    truth = rng.beta(2, 5, n)
    y = (rng.random(n) < truth).astype(int)
    p = np.clip(truth + np.where(tier == 1, 0.3, 0.0), 0, 1)  # a gap by city tier only
    got = groupings(users, ids, sensitive=["gender"], proxies=["city_tier"], intersections=[])
    doc = audit(Scored(ids, y, p), got, threshold=0.3, settings=AuditSettings(resamples=200))
    sections = doc["targeting"]["sections"]
    assert sections["city_tier"]["status"] == FAIL and not sections["city_tier"]["gates"]
    assert sections["gender"]["status"] == PASS
    assert doc["verdict"] == PASS
    gated = AuditSettings(resamples=200, gated=("sensitive", "proxy"))
    assert audit(Scored(ids, y, p), got, threshold=0.3, settings=gated)["verdict"] == FAIL


def test_incentive_parity_is_exact_per_cohort():
    from cadence.audits._audit import incentive_parity

    assert incentive_parity(None)["status"] == "not yet audited"
    sent = pd.to_datetime(["2025-03-01 09:00", "2025-03-01 17:00", "2025-03-02 09:00"], utc=True)
    same = pd.DataFrame(
        {"sent_at": sent, "incentive": ["discount"] * 3, "discount_rate": [0.05, 0.05, 0.1]}
    )
    assert incentive_parity(same)["status"] == PASS
    mixed = same.assign(discount_rate=[0.05, 0.1, 0.1])
    out = incentive_parity(mixed)
    assert out["status"] == FAIL and out["mixed_cohorts"] == ["2025-03-01"]


def test_calibration_curves_compare_groups_at_the_same_scores():
    y, p, g, users = _rows(n=30000, users=10000, shift=0.15)
    out = {e["group"]: e for e in _one(y, p, g, users)["groups"]}
    for name in ("a", "b", "c"):
        curve = out[name]["calibration_curve"]
        assert sum(c["n"] for c in curve) == out[name]["n"]
        predicted = [c["predicted"] for c in curve]
        assert predicted == sorted(predicted)
    # Group c's scores were raised without its buying: it sits below the diagonal.
    over = [c["predicted"] - c["observed"] for c in out["c"]["calibration_curve"]]
    fair = [c["predicted"] - c["observed"] for c in out["a"]["calibration_curve"]]
    assert np.mean(over) > 0.1 and abs(np.mean(fair)) < 0.03
