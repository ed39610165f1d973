"""Choosing the calibration: Platt, beta or isotonic, by out-of-fold log loss on the calibration
slice; what each gives (never exactly 0 or 1 from Platt or beta; the ranking kept by all); and
the map the stored model applies."""

from __future__ import annotations

import numpy as np
import pytest

from cadence.models._estimators import choose_calibration, fit_calibration
from cadence.models._model_code import CALIBRATIONS, beta_inputs, calibrated, expit

pytestmark = pytest.mark.unit

N = 4000


def _labels(truth, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Booster log-odds and labels drawn from a known calibration `truth(margin)`."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 2, N)
    return margin, (rng.random(N) < truth(margin)).astype(int)


TRUTHS = {
    # A logistic in the log-odds: what Platt fits exactly.
    "platt": lambda m: expit(1.7 * m - 0.8),
    # A logistic in ln(s) alone: beta with one slope at 0, which Platt cannot bend to.
    "beta": lambda m: expit(2.5 * beta_inputs(m)[:, 0] - 0.3 * beta_inputs(m)[:, 1] + 1),
    # A step: only the flexible isotonic map follows it.
    "isotonic": lambda m: np.where(m < 0, 0.05, 0.6),
}


@pytest.mark.parametrize("method", list(TRUTHS))
def test_each_kind_of_miscalibration_is_answered_by_its_own_method(method):
    margin, y = _labels(TRUTHS[method])
    chosen = choose_calibration(margin, y, CALIBRATIONS)
    losses = chosen["cv_log_loss"]
    assert set(losses) == set(CALIBRATIONS) and chosen["folds"] == 5
    assert chosen["method"] == method == min(losses, key=losses.get), losses
    # Refitted on the whole slice: the stored map is the one fitted to every row.
    refit = fit_calibration(margin, y, method)
    np.testing.assert_allclose(calibrated(margin, chosen), calibrated(margin, refit))


@pytest.mark.parametrize("method", ["platt", "beta"])
def test_platt_and_beta_keep_the_ranking_and_never_give_exactly_0_or_1(method):
    margin, y = _labels(lambda m: expit(3 * m))
    fitted = fit_calibration(margin, y, method)
    # Far beyond anything a booster gives, as well as the usual range.
    m = np.sort(np.concatenate([np.linspace(-1e4, 1e4, 2001), margin]))
    p = calibrated(m, fitted)
    assert ((p > 0) & (p < 1)).all(), (p.min(), p.max())
    assert (np.diff(p) >= 0).all()
    usual = (m > -8) & (m < 8)
    assert (np.diff(p[usual]) > 0).all()  # no ties where a booster's scores lie
    assert len(np.unique(calibrated(margin, fitted))) == len(np.unique(margin))


def test_isotonic_gives_0_only_where_the_slice_held_no_buyer():
    margin, y = _labels(lambda m: np.where(m < -1, 0.0, expit(m)))
    fitted = choose_calibration(margin, y, ("isotonic",))
    assert fitted["method"] == "isotonic"
    p = calibrated(margin, fitted)
    zero = p == 0
    assert zero.any() and not y[zero].any()  # the data's verdict: no buyer scored that low
    assert margin[zero].max() < margin[y == 1].min()
    order = np.argsort(margin)
    assert (np.diff(p[order]) >= 0).all()


def test_a_calibration_that_would_reverse_the_ranking_is_left_out():
    """Scores that fall as buying rises: Platt's and beta's slopes would turn the ranking over,
    so neither is a candidate, and isotonic, which cannot fall, flattens the scores."""
    margin, y = _labels(lambda m: expit(-m))
    chosen = choose_calibration(margin, y, CALIBRATIONS)
    assert chosen["method"] == "isotonic" and set(chosen["cv_log_loss"]) == {"isotonic"}
    assert fit_calibration(margin, y, "platt") is None
    p = calibrated(np.sort(margin), chosen)
    assert (np.diff(p) >= 0).all() and p.max() - p.min() < 0.05


def test_a_slice_with_too_few_buyers_is_refused():
    margin = np.linspace(-3, 3, 200)
    y = np.zeros(200, int)
    y[-1] = 1
    with pytest.raises(ValueError, match="1 buyers among 200 rows; calibrating needs at least 2"):
        choose_calibration(margin, y, CALIBRATIONS)


def test_a_calibration_stored_without_a_method_is_isotonic():
    """Models stored before there was a choice hold only isotonic thresholds."""
    x, y = [0.1, 0.4, 0.8], [0.0, 0.3, 0.9]
    m = np.linspace(-6, 6, 101)
    expected = np.interp(expit(m), x, y)
    np.testing.assert_allclose(calibrated(m, {"x": x, "y": y}), expected)
    np.testing.assert_allclose(calibrated(m, {"method": "isotonic", "x": x, "y": y}), expected)
    with pytest.raises(ValueError, match="calibration method 'spline'"):
        calibrated(m, {"method": "spline", "coef": [1.0]})
