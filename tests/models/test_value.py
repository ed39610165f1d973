"""Customer value: Gamma-Gamma recovers known parameters and matches lifetimes on CDNOW, the
expected spend is expected orders times expected value, nothing after the as-of time counts,
and the evaluation refuses a window past the data's end."""

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
    evaluate_value,
    expected_order_value,
    expected_spend,
    fit_gamma_gamma,
    fit_value,
    probability_spend,
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
    result = evaluate_value(log, AS_OF, end, 90)
    realised = realised_spend(log, AS_OF, 90, end)
    in_window = log[(log.ordered_at >= AS_OF) & (log.ordered_at < AS_OF + pd.Timedelta(days=90))]
    assert realised.sum() == pytest.approx(in_window.amount.sum())
    assert result["shoppers"] == log[log.ordered_at < AS_OF].user_id.nunique()
    assert result["mae"] > 0
    assert 0.3 < result["spearman"] <= 1.0  # shoppers keep their rate and their value
    assert result["predicted_total"] == pytest.approx(result["realised_total"], rel=0.5)


def test_a_realised_window_past_the_data_end_is_refused(log):
    end = AS_OF + pd.Timedelta(days=60)
    with pytest.raises(ValueError, match="runs to 2024-03-31, past the data's end"):
        evaluate_value(log, AS_OF, end, 90)


def test_probability_spend_is_probability_times_own_mean_order_day():
    day = pd.Timestamp("2024-01-10", tz="UTC")
    orders = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "a"],
            "ordered_at": [day, day + pd.Timedelta(hours=2), day + pd.Timedelta(days=3), day]
            + [AS_OF + pd.Timedelta(days=40)],
            "amount": [4.0, 6.0, 30.0, 40.0, 1000.0],
        }
    )
    p = pd.Series([0.5, 0.25, 1.0], index=["a", "b", "new"])
    spend = probability_spend(p, orders, AS_OF + pd.Timedelta(days=30))
    # a: order days worth 10 and 30; b: 40; new: the mean order day, 80 / 3.
    np.testing.assert_allclose(spend.to_numpy(), [10.0, 10.0, 80.0 / 3])
    metrics = spend_metrics(
        spend, orders, AS_OF + pd.Timedelta(days=30), AS_OF + pd.Timedelta(days=90), 30
    )
    assert metrics["realised_total"] == 1000.0 and metrics["shoppers"] == 3
    assert metrics["mae"] == pytest.approx((990.0 + 10.0 + 80.0 / 3) / 3)


def test_evaluation_over_chosen_users(log):
    end = AS_OF + pd.Timedelta(days=180)
    users = pd.Index(sorted(log[log.ordered_at < AS_OF].user_id.unique())[:200])
    assert evaluate_value(log, AS_OF, end, 90, users=users)["shoppers"] == 200
