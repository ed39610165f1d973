"""The BG/NBD fitter against lifetimes on CDNOW, on data with known parameters, and where
lifetimes' expectation overflows."""

from __future__ import annotations

import warnings
from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter

from cadence.features._btyd import (
    BGNBDParams,
    BTYDFitError,
    collapse,
    days_to_next,
    expected_orders,
    fit_bgnbd,
    p_alive,
    simulate_bgnbd,
)
from cadence.models._baselines import BGNBD

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    # lifetimes.datasets needs pkg_resources; the file it would read is the same.
    path = Path(lifetimes.__file__).parent / "datasets" / "cdnow_customers_summary.csv"
    return pd.read_csv(path)


def _lifetimes(cdnow: pd.DataFrame, penalizer: float) -> BetaGeoFitter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BetaGeoFitter(penalizer_coef=penalizer).fit(
            cdnow.frequency, cdnow.recency, cdnow["T"]
        )


@pytest.mark.parametrize("penalizer", [0.0, 0.001])
def test_parameters_and_predictions_match_lifetimes_on_cdnow(cdnow, penalizer):
    theirs = _lifetimes(cdnow, penalizer)
    ours = fit_bgnbd(cdnow.frequency, cdnow.recency, cdnow["T"], penalizer=penalizer)
    np.testing.assert_allclose(ours.params.as_array(), theirs.params_.to_numpy(), rtol=1e-3)
    assert ours.n_customers == len(cdnow) and ours.n_patterns < len(cdnow)
    # The same parameters give the same predictions.
    theirs.params_ = pd.Series(ours.params.as_array(), index=["r", "alpha", "a", "b"])
    x, tx, t = cdnow.frequency, cdnow.recency, cdnow["T"]
    np.testing.assert_allclose(
        p_alive(ours.params, x, tx, t), theirs.conditional_probability_alive(x, tx, t), atol=1e-6
    )
    for h in (7, 30, 90):
        np.testing.assert_allclose(
            expected_orders(ours.params, h, x, tx, t),
            theirs.conditional_expected_number_of_purchases_up_to_time(h, x, tx, t),
            atol=1e-6,
            err_msg=f"{h} days",
        )


def test_the_fitter_recovers_known_parameters():
    rng = np.random.default_rng(7)
    true = BGNBDParams(r=0.6, alpha=12.0, a=0.9, b=3.0)
    t = rng.uniform(30, 400, 40_000)
    x, tx = simulate_bgnbd(true, t, rng)
    fit = fit_bgnbd(x, tx, t)
    np.testing.assert_allclose(fit.params.as_array(), true.as_array(), rtol=0.15)
    # Data from other parameters give other estimates: the fit follows the data.
    x2, tx2 = simulate_bgnbd(BGNBDParams(r=2.0, alpha=12.0, a=0.9, b=3.0), t, rng)
    assert fit_bgnbd(x2, tx2, t).params.r > 1.5


def test_collapsing_histories_does_not_change_the_fit():
    rng = np.random.default_rng(3)
    t = np.floor(rng.uniform(10, 200, 3000))
    x, tx = simulate_bgnbd(BGNBDParams(0.3, 5.0, 0.7, 2.0), t, rng)
    tx = np.floor(tx)
    ux, utx, ut, w = collapse(x, tx, t)
    assert len(ux) < len(x) and w.sum() == len(x)
    a, b = fit_bgnbd(x, tx, t), fit_bgnbd(ux, utx, ut, weights=w)
    assert a.params == b.params
    order = rng.permutation(len(x))
    assert fit_bgnbd(x[order], tx[order], t[order]).params == a.params


def test_expectations_stay_finite_where_lifetimes_overflows():
    params = BGNBDParams(r=19.6, alpha=14.0, a=0.219, b=0.637)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, 20_000).astype(float)
    t = rng.uniform(1, 700, 20_000)
    tx = np.where(x > 0, t * rng.uniform(0, 1, 20_000), 0.0)
    lf = BetaGeoFitter()
    lf.params_ = pd.Series(params.as_array(), index=["r", "alpha", "a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(lf.conditional_expected_number_of_purchases_up_to_time(30, x, tx, t))
    ours = expected_orders(params, 30, x, tx, t)
    assert np.isnan(theirs).any()  # the case this guards against occurs here
    assert np.isfinite(ours).all() and (ours >= 0).all()
    ok = np.isfinite(theirs)
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-8, atol=1e-10)


def test_quantities_move_the_right_way():
    p = BGNBDParams(0.25, 4.4, 0.8, 2.4)
    # Silent for longer: less likely alive, fewer expected orders.
    assert p_alive(p, 5, 100, 300)[()] < p_alive(p, 5, 250, 300)[()]
    assert expected_orders(p, 30, 5, 100, 300)[()] < expected_orders(p, 30, 5, 250, 300)[()]
    # A longer horizon holds more orders; more orders mean shorter gaps.
    assert expected_orders(p, 90, 5, 250, 300)[()] > expected_orders(p, 30, 5, 250, 300)[()]
    assert days_to_next(p, 10, 300)[()] < days_to_next(p, 2, 300)[()]
    assert days_to_next(p, 2, 300)[()] == pytest.approx((4.4 + 300) / 2.25)


def test_nothing_to_fit_is_an_error_not_a_guess():
    with pytest.raises(BTYDFitError, match="repeat purchase"):
        fit_bgnbd([0, 0, 0], [0, 0, 0], [10, 20, 30])
    with pytest.raises(BTYDFitError, match="recency <= T"):
        fit_bgnbd([1, 2], [40, 5], [30, 30])


def test_the_baseline_uses_the_fitter(cdnow):
    bg = BGNBD(30, penalizer=0.0).fit(cdnow)
    direct = fit_bgnbd(cdnow.frequency, cdnow.recency, cdnow["T"])
    assert bg.params_ == direct.params and bg.penalizer_ == 0.0
    p = bg.expected(cdnow)
    e = expected_orders(direct.params, 30, cdnow.frequency, cdnow.recency, cdnow["T"])
    np.testing.assert_allclose(p, 1 - np.exp(-e))
    assert ((p >= 0) & (p < 1)).all()
