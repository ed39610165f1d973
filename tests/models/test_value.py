"""Customer value: Gamma-Gamma recovers known parameters and matches lifetimes on CDNOW, the
expected spend is expected orders times expected value, nothing after the as-of time counts,
the evaluation refuses a window past the data's end, and the calibrated interval covers near
80% of held-out spend where the simulated one does not."""

from __future__ import annotations

import warnings
from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter

from cadence.features._btyd import expected_orders
from cadence.models._baselines import BGNBD
from cadence.models._value import (
    GammaGammaParams,
    ValueFitError,
    ValueModel,
    _sorted_quantile,
    calibrate_interval,
    expected_order_value,
    expected_spend,
    fit_gamma_gamma,
    fit_value,
    interval_coverage,
    realised_spend,
    spend_metrics,
    value_summary,
)

pytestmark = pytest.mark.unit

TRUE = GammaGammaParams(p=6.0, q=4.0, v=15.0)
AS_OF = pd.Timestamp("2024-01-01", tz="UTC")


def _mean_values(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(repeat purchases, mean value) drawn from Gamma-Gamma with TRUE's parameters."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(3.0, n) + 1
    nu = rng.gamma(TRUE.q, 1.0 / TRUE.v, n)
    total = rng.gamma(TRUE.p * x, 1.0 / nu)  # the sum of x Gamma(p, nu) values
    return x.astype(float), total / x


def _order_log(n: int, seed: int) -> pd.DataFrame:
    """Shoppers buying at their own rate over the year before AS_OF and after it, each order
    worth Gamma(p, nu) with nu their own."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=365)
    rate = rng.gamma(1.0, 1.0 / 40.0, n)  # orders a day
    nu = rng.gamma(TRUE.q, 1.0 / TRUE.v, n)
    first = rng.uniform(0, 300, n)
    rows = []
    for u in range(n):
        t = first[u]
        while t < 365 + 180:
            rows.append((f"u{u:05d}", t, rng.gamma(TRUE.p, 1.0 / nu[u])))
            t += rng.exponential(1.0 / rate[u]) + 1.0
    users, days, amounts = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "user_id": users,
            "ordered_at": start + pd.to_timedelta(np.array(days), unit="D"),
            "amount": np.round(amounts, 2),
        }
    )


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return _order_log(1500, 7)


def test_gamma_gamma_recovers_known_parameters():
    x, m = _mean_values(6000, 1)
    fit = fit_gamma_gamma(x, m)
    assert fit.p == pytest.approx(TRUE.p, rel=0.25)
    assert fit.q == pytest.approx(TRUE.q, rel=0.25)
    assert fit.v == pytest.approx(TRUE.v, rel=0.35)
    assert fit.population_mean == pytest.approx(TRUE.population_mean, rel=0.05)


def test_gamma_gamma_refuses_too_few_repeat_shoppers():
    with pytest.raises(ValueFitError, match="at least 10 shoppers with a repeat purchase"):
        fit_gamma_gamma([0, 0, 1, 2], [np.nan, np.nan, 10.0, 12.0])


def test_expected_value_shrinks_towards_the_population_mean():
    v = expected_order_value(TRUE, [0, 1, 50], [np.nan, 100.0, 100.0])
    assert v[0] == pytest.approx(TRUE.population_mean)
    assert TRUE.population_mean < v[1] < v[2] < 100.0


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    # lifetimes.datasets needs pkg_resources; this is the file its
    # load_cdnow_summary_data_with_monetary_value reads.
    path = Path(lifetimes.__file__).parent / "datasets"
    frame = pd.read_csv(path / "cdnow_customers_summary_with_transactions.csv")
    return frame.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary"})


def test_matches_lifetimes_on_cdnow(cdnow):
    repeat = cdnow[cdnow.frequency > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ggf = GammaGammaFitter(penalizer_coef=0.0).fit(repeat.frequency, repeat.monetary)
        bgf = BetaGeoFitter(penalizer_coef=0.001).fit(cdnow.frequency, cdnow.recency, cdnow["T"])
        ours = fit_gamma_gamma(cdnow.frequency, cdnow.monetary)
        np.testing.assert_allclose([ours.p, ours.q, ours.v], ggf.params_.to_numpy(), rtol=1e-4)
        theirs_value = ggf.conditional_expected_average_profit(cdnow.frequency, cdnow.monetary)
        np.testing.assert_allclose(
            expected_order_value(ours, cdnow.frequency, cdnow.monetary), theirs_value, rtol=1e-4
        )
        bgnbd = BGNBD(90).fit(cdnow)
        model = ValueModel(AS_OF, bgnbd, ours)
        pred = model.predict(cdnow, 13, interval=False)  # CDNOW's summary counts weeks
        theirs_orders = bgf.conditional_expected_number_of_purchases_up_to_time(
            13, cdnow.frequency, cdnow.recency, cdnow["T"]
        )
    np.testing.assert_allclose(pred.expected_spend, theirs_orders * theirs_value, rtol=1e-3)


def test_expected_spend_is_expected_orders_times_expected_value(log):
    model, summary = fit_value(log, AS_OF)
    pred = model.predict(summary, 90)
    orders = expected_orders(
        model.bgnbd.params_, 90, summary.frequency, summary.recency, summary["T"]
    )
    value = expected_order_value(model.gamma_gamma, summary.frequency, summary.monetary)
    np.testing.assert_allclose(pred.expected_spend, orders * value, rtol=1e-12)
    single = (summary.frequency == 0).to_numpy()
    assert single.any()
    np.testing.assert_allclose(
        pred.expected_order_value[single], model.gamma_gamma.population_mean, rtol=1e-12
    )
    assert (pred.expected_spend_low >= 0).all()
    assert (pred.expected_spend_low <= pred.expected_spend_high).all()
    assert (pred.expected_spend_high > 0).any()
    # Roughly the known truth: order values are Gamma(6, nu), nu ~ Gamma(4, 15): mean 30.
    assert model.gamma_gamma.population_mean == pytest.approx(30.0, rel=0.15)


def test_orders_after_the_as_of_time_change_nothing(log):
    before = log[log.ordered_at < AS_OF]
    assert len(before) < len(log)
    a = expected_spend(log, AS_OF)
    b = expected_spend(before, AS_OF)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == [
        f"expected_spend_{h}d{s}" for h in (90, 365) for s in ("", "_low", "_high")
    ]
    assert (a.expected_spend_365d > a.expected_spend_90d).all()
    # An order at the as-of instant is after it.
    summary = value_summary(log, AS_OF)
    assert summary.index.isin(before.user_id).all() and len(summary) == before.user_id.nunique()


def test_evaluation_against_realised_spend(log):
    end = AS_OF + pd.Timedelta(days=180)
    model, summary = fit_value(log, AS_OF)
    predicted = model.predict(summary, 90, interval=False).expected_spend
    realised = realised_spend(log, AS_OF, 90, end)
    result = spend_metrics(predicted, realised)
    in_window = log[(log.ordered_at >= AS_OF) & (log.ordered_at < AS_OF + pd.Timedelta(days=90))]
    assert realised.sum() == pytest.approx(in_window.amount.sum())
    assert result["shoppers"] == log[log.ordered_at < AS_OF].user_id.nunique()
    assert result["mae"] > 0
    assert 0.3 < result["spearman"] <= 1.0  # shoppers keep their rate and their value
    assert result["predicted_total"] == pytest.approx(result["realised_total"], rel=0.5)


def test_a_realised_window_past_the_data_end_is_refused(log):
    end = AS_OF + pd.Timedelta(days=60)
    with pytest.raises(ValueError, match="runs to 2024-03-31, past the data's end"):
        realised_spend(log, AS_OF, 90, end)


def test_spend_metrics_count_a_shopper_without_spend_as_zero():
    predicted = pd.Series([10.0, 10.0, 80.0 / 3], index=["a", "b", "new"])
    realised = pd.Series([1000.0, 5.0], index=["a", "not-predicted"])
    metrics = spend_metrics(predicted, realised)
    assert metrics["realised_total"] == 1000.0 and metrics["shoppers"] == 3
    assert metrics["mae"] == pytest.approx((990.0 + 10.0 + 80.0 / 3) / 3)
    assert metrics["predicted_total"] == pytest.approx(20.0 + 80.0 / 3)


def _regular_log(n: int, seed: int, *, prefix: str = "r") -> pd.DataFrame:
    """Shoppers who never leave and buy every 15 to 60 days, with little noise in the gap
    (a gap's coefficient of variation is 0.15) and in the value: far more regular than the
    Poisson purchases BG/NBD simulates, so its interval is too wide."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=450)
    gap = rng.uniform(15, 60, n)
    value = rng.gamma(4.0, 10.0, n)
    users, days, amounts = [], [], []
    for u in range(n):
        t = rng.uniform(0, 3 * gap[u])
        while t < 450 + 120:
            users.append(f"{prefix}{u:05d}")
            days.append(t)
            amounts.append(value[u] * rng.gamma(20.0, 1 / 20.0))
            t += gap[u] * rng.gamma(1 / 0.15**2, 0.15**2)
    return pd.DataFrame(
        {
            "user_id": users,
            "ordered_at": start + pd.to_timedelta(np.array(days), unit="D"),
            "amount": np.round(amounts, 2),
        }
    )


def _lapsed_log(n: int, seed: int) -> pd.DataFrame:
    """Shoppers who bought one to three times in the first 120 days, then never again."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=450)
    k = rng.integers(1, 4, n)
    users = np.repeat([f"d{u:05d}" for u in range(n)], k)
    days = rng.uniform(0, 120, k.sum())
    return pd.DataFrame(
        {
            "user_id": users,
            "ordered_at": start + pd.to_timedelta(days, unit="D"),
            "amount": np.round(rng.gamma(4.0, 10.0, k.sum()), 2),
        }
    )


def _coverage(log: pd.DataFrame, level) -> tuple[pd.Series, dict[str, float]]:
    """Coverage of the interval at `level` on the 90 days after AS_OF (held out: the
    calibration only sees orders before AS_OF), and the realised spend."""
    model, summary = fit_value(log, AS_OF)
    end = AS_OF + pd.Timedelta(days=120)
    realised = realised_spend(log, AS_OF, 90, end).reindex(summary.index, fill_value=0.0)
    pred = model.predict(summary, 90, level=level)
    return realised, pred


def test_inverse_distribution_function_matches_numpy():
    draws = np.sort(np.random.default_rng(0).gamma(1.0, 1.0, (50, 400)), axis=1)
    for q in (0.0, 0.1, 0.37, 0.9, 1.0):
        expect = np.quantile(draws, q, axis=1, method="inverted_cdf")
        np.testing.assert_array_equal(_sorted_quantile(draws, np.full(50, q)), expect)


def test_interval_scores_are_the_levels_that_cover(log):
    """A shopper's score is the smallest level whose interval holds their spend: the share of
    scores at or below a level is that level's coverage, exactly (the same simulated draws;
    levels off the grid of 1/400 steps, where a spend on the interval's edge is not ambiguous)."""
    model, summary = fit_value(log, AS_OF)
    end = AS_OF + pd.Timedelta(days=180)
    realised = realised_spend(log, AS_OF, 90, end).reindex(summary.index, fill_value=0.0)
    scores, buys = model.interval_scores(summary, 90, realised, seed=3)
    assert ((scores >= 0) & (scores <= 1)).all() and ((buys >= 0) & (buys <= 1)).all()
    for level in (0.2137, 0.5013, 0.8011, 0.9561):
        pred = model.predict(summary, 90, level=level, seed=3)
        covered = interval_coverage(pred.expected_spend_low, pred.expected_spend_high, realised)
        assert covered["coverage"] == pytest.approx((scores <= level).mean(), abs=1e-12)


def test_calibrated_interval_covers_near_80_percent_of_held_out_spend():
    log = _regular_log(2000, 3)
    cal = calibrate_interval(log, AS_OF, 90)
    assert cal.calibration_as_of == AS_OF - pd.Timedelta(days=90)
    assert cal.nominal_coverage > 0.95  # the simulated interval is too wide here...
    realised, nominal = _coverage(log, 0.8)
    before = interval_coverage(nominal.expected_spend_low, nominal.expected_spend_high, realised)
    assert before["coverage"] > 0.95  # ...and stays so on the held-out window
    realised, calibrated = _coverage(log, cal)
    after = interval_coverage(
        calibrated.expected_spend_low, calibrated.expected_spend_high, realised
    )
    assert after["coverage"] == pytest.approx(0.8, abs=0.05)
    assert after["mean_width"] < 0.7 * before["mean_width"]


def test_likely_buyers_keep_a_real_range_beside_silent_shoppers():
    """With many lapsed shoppers, one level for all would make the buyers' intervals points;
    per group, the regular buyers' coverage is near 80% and the lapsed keep 0 in theirs."""
    log = pd.concat([_regular_log(1000, 4), _lapsed_log(1500, 5)], ignore_index=True)
    cal = calibrate_interval(log, AS_OF, 90)
    realised, grouped = _coverage(log, cal)
    _, pooled = _coverage(log, cal.pooled_level)
    regular = realised.index.str.startswith("r")
    by_group = interval_coverage(
        grouped.expected_spend_low[regular], grouped.expected_spend_high[regular], realised[regular]
    )
    by_pool = interval_coverage(
        pooled.expected_spend_low[regular], pooled.expected_spend_high[regular], realised[regular]
    )
    assert by_group["coverage"] == pytest.approx(0.8, abs=0.06)
    assert by_pool["coverage"] < 0.7
    assert (grouped.expected_spend_low[~regular] == 0).all()
    assert (realised[~regular] == 0).all()


def test_a_short_history_keeps_the_nominal_interval_and_says_so(log):
    """Calibrating the 90-day interval at AS_OF needs orders before AS_OF - 90 days."""
    short = log[log.ordered_at >= AS_OF - pd.Timedelta(days=80)]
    with pytest.raises(ValueFitError, match="needs orders before 2023-10-03"):
        calibrate_interval(short, AS_OF, 90)
    out = expected_spend(short, AS_OF, (90,))
    note = out.attrs["interval"]["90d"]
    assert note["calibrated"] is False and "uncalibrated" in note["note"]
    nominal = expected_spend(short, AS_OF, (90,), calibrate=False)
    pd.testing.assert_frame_equal(out, nominal)
    assert list(out.columns) == [f"expected_spend_90d{s}" for s in ("", "_low", "_high")]


def test_the_list_interval_is_calibrated_where_history_allows(log):
    out = expected_spend(log, AS_OF, (90,))
    note = out.attrs["interval"]["90d"]
    assert note["calibrated"] is True
    assert note["calibration_as_of"] == "2023-10-03"
    cal = calibrate_interval(log, AS_OF, 90)
    model, summary = fit_value(log, AS_OF)
    pred = model.predict(summary, 90, level=cal)
    np.testing.assert_allclose(out.expected_spend_90d_high, pred.expected_spend_high)


def test_one_simulation_gives_every_levels_interval_as_predict_does(log):
    model, summary = fit_value(log, AS_OF)
    cal = calibrate_interval(log, AS_OF, 90, seed=3)
    levels = [0.8, cal, 0.5]
    (lows, highs), buys = model.intervals(summary, 90, levels, seed=3)
    for level, low, high in zip(levels, lows, highs, strict=True):
        pred = model.predict(summary, 90, level=level, seed=3)
        np.testing.assert_array_equal(low, pred.expected_spend_low.to_numpy())
        np.testing.assert_array_equal(high, pred.expected_spend_high.to_numpy())
    assert (highs[2] <= highs[0]).all() and (lows[2] >= lows[0]).all()  # narrower at 50%
    np.testing.assert_array_equal(buys, model.interval_scores(summary, 90, buys * 0, seed=3)[1])
