from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.models._drift import Limits, psi, psi_columns, quantile_edges, shares, verdict

pytestmark = pytest.mark.unit

LIMITS = Limits(max_feature_psi=0.25, max_score_psi=0.2, max_auc_drop=0.05)


def test_psi_of_a_sample_against_itself_or_its_twin_is_about_zero():
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 3.0, 50_000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, rng.gamma(2.0, 3.0, 50_000)) < 0.01


def test_psi_grows_with_the_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 20_000)
    b = rng.normal(0, 1, 20_000)
    small, large = psi(a, b + 0.1), psi(a, b + 1.0)
    assert 0.005 < small < 0.1
    assert large > 0.25 and large > 10 * small
    assert psi(a, b * 10) > 1.0


def test_bins_cut_at_the_reference_deciles_hold_a_tenth_each():
    x = np.arange(1_000, dtype=float)
    edges = quantile_edges(x, 10)
    assert len(edges) == 9
    assert shares(x, edges)[:-1] == pytest.approx([0.1] * 10)
    # A few distinct values: one bin per value, none repeated.
    assert quantile_edges([0, 0, 0, 1, 1, 2], 10).tolist() == [0.0, 1.0, 2.0]
    assert shares([0, 0, 0, 1, 1, 2], quantile_edges([0, 0, 0, 1, 1, 2], 10))[:3] == pytest.approx(
        [0.5, 1 / 3, 1 / 6]
    )


def test_missing_values_are_a_bin_of_their_own():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 10_000)
    b = a.copy()
    b[:3_000] = np.nan
    s = shares(b, quantile_edges(a, 10))
    assert s[-1] == pytest.approx(0.3) and s.sum() == pytest.approx(1.0)
    # The missing bin, empty in the reference (floored at 1e-4), holds 30%; each of the ten
    # value bins about 7% instead of 10%.
    by_hand = (0.3 - 1e-4) * np.log(0.3 / 1e-4) + 10 * (0.07 - 0.1) * np.log(0.07 / 0.1)
    assert psi(a, b) == pytest.approx(by_hand, rel=0.02)
    # Missing in both samples alike: no drift; and pandas' own missing values count too.
    assert psi(b, b) == pytest.approx(0.0, abs=1e-12)
    ints = pd.array([1, 2, None, 3], dtype="Int64")
    assert shares(ints, np.array([1.0, 2.0]))[-1] == 0.25


def test_an_empty_bin_is_floored_so_the_index_stays_finite():
    a = np.arange(100, dtype=float)
    assert np.isfinite(psi(a, np.full(100, 1_000.0)))
    assert psi(a, np.full(100, 1_000.0)) > 5


def test_psi_per_column_sorts_the_largest_shift_first_and_names_a_missing_column():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.poisson(2, 5_000)})
    cur = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.poisson(2, 5_000) * 10})
    out = psi_columns(ref, cur)
    assert out.index.tolist() == ["b", "a"]
    assert out["b"] > 1 and out["a"] < 0.02
    with pytest.raises(ValueError, match="lack 1 column"):
        psi_columns(ref, cur[["a"]])


def test_within_every_limit_the_verdict_is_ok():
    v = verdict({"a": 0.1, "b": 0.25}, 0.2, LIMITS, auc_realised=0.76, auc_test=0.8)
    assert not v.retrain and v.reasons == []


def test_each_limit_crossed_is_a_reason_that_names_the_figure():
    v = verdict({"a": 0.1, "b": 0.9, "c": 0.3}, 0.1, LIMITS)
    assert v.retrain and len(v.reasons) == 1
    assert "b 0.900, c 0.300" in v.reasons[0] and "2 of 3" in v.reasons[0]
    assert "a " not in v.reasons[0]
    v = verdict({"a": 0.1}, 0.21, LIMITS, auc_realised=0.70, auc_test=0.80)
    assert v.retrain and len(v.reasons) == 2
    assert v.reasons[0].startswith("score PSI 0.210")
    assert "realised ROC AUC 0.700" in v.reasons[1] and "0.100 below" in v.reasons[1]


def test_the_auc_check_waits_for_a_realised_auc():
    assert not verdict({"a": 0.0}, 0.0, LIMITS, auc_realised=None, auc_test=0.9).retrain
    assert not verdict({"a": 0.0}, 0.0, LIMITS, auc_realised=0.5, auc_test=None).retrain


def test_a_long_list_of_drifted_inputs_is_cut_short():
    v = verdict({f"f{i:02d}": 1.0 + i for i in range(25)}, 0.0, LIMITS)
    assert "f24 25.000" in v.reasons[0] and "and 15 more" in v.reasons[0]
    assert "f00" not in v.reasons[0]
