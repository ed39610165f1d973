"""Customer value: each shopper's expected spend over the next 90 or 365 days, as BG/NBD's
expected orders in the window times Gamma-Gamma's expected order value (Fader, Hardie and Lee,
2005, "RFM and CLV: Using Iso-Value Curves"), with an 80% interval.

Everything is fitted on the orders strictly before the as-of time. Orders are taken per day,
as BG/NBD counts them: a shopper's spend on one day is one purchase. Gamma-Gamma is fitted on
the repeat shoppers' mean spend per repeat purchase day (the first day left out, as
`lifetimes` does); a shopper without a repeat purchase gets the fitted population mean order
value, p * v / (q - 1), which is also what the model's posterior says for them.

The interval is simulated, and says so: a shopper is alive with BG/NBD's P(alive), buys at a
rate drawn from its Gamma posterior (Gamma(r + x, alpha + T)), as a Poisson process over the
whole window (drop-out within the window is ignored, so the upper end leans high), and each
purchase is worth Gamma(p, nu) with nu drawn from the Gamma-Gamma posterior
(Gamma(p x + q, v + x m)). The 10th and 90th percentiles of the simulated spend are the
interval; the point value is the analytic expectation, not the simulation's mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, gammaln
from scipy.stats import spearmanr

from cadence.features._btyd import BTYDFitError, expected_orders, p_alive
from cadence.models._baselines import BGNBD, rfm_summary

HORIZONS = (90, 365)
LEVEL = 0.8  # the interval's coverage
DRAWS = 400  # simulated futures per shopper for the interval
_CHUNK = 20_000  # shoppers per simulation batch, to bound memory
_LOG_BOUND = 20.0


class ValueFitError(ValueError):
    """The history cannot identify a Gamma-Gamma fit (too few repeat shoppers, no optimum, or
    a population mean order value that is infinite, q <= 1)."""


@dataclass(frozen=True)
class GammaGammaParams:
    """p: the shape of a shopper's order values; q, v: the Gamma prior of their rate."""

    p: float
    q: float
    v: float

    @property
    def population_mean(self) -> float:
        """The mean order value of a shopper nothing is known about: p v / (q - 1)."""
        return self.p * self.v / (self.q - 1.0)


def _gg_objective(
    log_params: np.ndarray, x: np.ndarray, m: np.ndarray, penalizer: float
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of the repeat shoppers' mean values, and its gradient in
    the log-parameters (the penalty as lifetimes': `penalizer * sum(params**2)`)."""
    p, q, v = np.exp(log_params)
    px = p * x
    log_xm_v = np.log(x * m + v)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_xm_v
    )
    d_pxq = digamma(px + q)
    g_p = (x * (d_pxq - digamma(px) + np.log(m) + np.log(x) - log_xm_v)).mean()
    g_q = (d_pxq - digamma(q) + np.log(v) - log_xm_v).mean()
    g_v = (q / v - (px + q) / (x * m + v)).mean()
    params = np.array([p, q, v])
    value = -ll.mean() + penalizer * (params**2).sum()
    grad = -np.array([g_p, g_q, g_v]) * params + 2.0 * penalizer * params**2
    return float(value), grad


def fit_gamma_gamma(frequency, monetary, *, penalizer: float = 0.0) -> GammaGammaParams:
    """Maximum likelihood (p, q, v) on the shoppers with a repeat purchase (frequency > 0) and
    a positive mean value; raises `ValueFitError` when there is nothing to fit, no optimum, or
    q <= 1 (no finite population mean)."""
    x = np.asarray(frequency, float)
    m = np.asarray(monetary, float)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    if len(x) < 10:
        raise ValueFitError(
            f"Gamma-Gamma needs at least 10 shoppers with a repeat purchase and a positive "
            f"order value; the history has {len(x)}"
        )
    # Start from the method of moments on the mean values, on the data's scale.
    start = np.log([1.0, 2.0, float(np.median(m))])
    res = minimize(
        _gg_objective,
        x0=start,
        args=(x, m, penalizer),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 3,
        options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000},
    )
    _, grad = _gg_objective(res.x, x, m, penalizer)
    if not np.isfinite(res.fun) or np.abs(grad).max() > 1e-4:
        raise ValueFitError(f"Gamma-Gamma did not converge ({res.message})")
    p, q, v = (float(e) for e in np.exp(res.x))
    if q <= 1.0:
        raise ValueFitError(
            f"Gamma-Gamma fitted q = {q:.3g} <= 1: the order values are too heavy-tailed for "
            "a finite expected order value"
        )
    return GammaGammaParams(p, q, v)


def expected_order_value(params: GammaGammaParams, frequency, monetary) -> np.ndarray:
    """The conditional expected order value: a weighted mean of the population mean and the
    shopper's own mean, the shopper's weight growing with their repeat purchases. A shopper
    without one (or without a usable mean) gets the population mean."""
    x = np.asarray(frequency, float)
    m = np.nan_to_num(np.asarray(monetary, float), nan=0.0)
    usable = (x > 0) & (m > 0)
    x = np.where(usable, x, 0.0)
    p, q = params.p, params.q
    w = p * x / (p * x + q - 1.0)
    return (1.0 - w) * params.population_mean + w * m


def value_summary(orders: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Per shopper with an order before t: BG/NBD's frequency, recency and T (days) and the
    mean spend per repeat purchase day (NaN without a repeat purchase)."""
    o = orders[orders.ordered_at < t]
    daily = (
        pd.DataFrame({"user_id": o.user_id, "day": o.ordered_at.dt.floor("D"), "amount": o.amount})
        .groupby(["user_id", "day"], sort=True)
        .amount.sum()
        .reset_index()
    )
    first_day = daily.groupby("user_id").day.transform("min")
    repeat = daily[daily.day > first_day]
    summary = rfm_summary(o, t)
    summary["monetary"] = repeat.groupby("user_id").amount.mean().reindex(summary.index)
    return summary


@dataclass(frozen=True)
class ValueModel:
    """BG/NBD and Gamma-Gamma fitted on the orders before `as_of`."""

    as_of: pd.Timestamp
    bgnbd: BGNBD
    gamma_gamma: GammaGammaParams

    def predict(
        self, summary: pd.DataFrame, horizon: int, *, interval: bool = True, seed: int = 0
    ) -> pd.DataFrame:
        """Per shopper of `summary` (from `value_summary` at `as_of`): expected orders and order
        value, expected spend in `horizon` days, and (with `interval`) its 80% interval."""
        x = summary.frequency.to_numpy(float)
        tx = summary.recency.to_numpy(float)
        t = summary["T"].to_numpy(float)
        m = summary.monetary.to_numpy(float)
        bg = self.bgnbd.params_
        n = expected_orders(bg, horizon, x, tx, t)
        value = expected_order_value(self.gamma_gamma, x, m)
        out = pd.DataFrame(
            {"expected_orders": n, "expected_order_value": value, "expected_spend": n * value},
            index=summary.index,
        )
        if interval:
            low, high = self._interval(x, tx, t, m, horizon, seed)
            out["expected_spend_low"], out["expected_spend_high"] = low, high
        return out

    def _interval(self, x, tx, t, m, horizon, seed) -> tuple[np.ndarray, np.ndarray]:
        """The simulated 10th and 90th percentiles of the spend (see the module's note)."""
        rng = np.random.default_rng(seed)
        bg, gg = self.bgnbd.params_, self.gamma_gamma
        alive = p_alive(bg, x, tx, t)
        usable = (x > 0) & (np.nan_to_num(m, nan=0.0) > 0)
        xm = np.where(usable, x * np.nan_to_num(m, nan=0.0), 0.0)
        xg = np.where(usable, x, 0.0)
        q_lo, q_hi = (1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2
        low, high = np.empty(len(x)), np.empty(len(x))
        for s in range(0, len(x), _CHUNK):
            sl = slice(s, s + _CHUNK)
            k = len(x[sl])
            shape = (k, DRAWS)
            lam = rng.gamma((bg.r + x[sl])[:, None], 1.0 / (bg.alpha + t[sl])[:, None], shape)
            count = rng.poisson(lam * horizon) * (rng.random(shape) < alive[sl, None])
            nu = rng.gamma((gg.p * xg[sl] + gg.q)[:, None], 1.0 / (gg.v + xm[sl])[:, None], shape)
            spend = np.zeros(shape)
            bought = count > 0
            spend[bought] = rng.gamma(gg.p * count[bought], 1.0 / nu[bought])
            low[sl], high[sl] = np.quantile(spend, [q_lo, q_hi], axis=1)
        return low, high


def fit_value(orders: pd.DataFrame, as_of: pd.Timestamp) -> tuple[ValueModel, pd.DataFrame]:
    """Both models fitted on the orders strictly before `as_of` (`user_id`, `ordered_at`,
    `amount`), and the per-shopper summary they predict from. Raises a ValueError
    (`BTYDFitError` or `ValueFitError`) when the history cannot identify either."""
    summary = value_summary(orders, as_of)
    if summary.empty:
        raise ValueFitError(f"no orders before {as_of:%Y-%m-%d} to fit customer value on")
    bgnbd = BGNBD(horizon_days=HORIZONS[0]).fit(summary)
    gg = fit_gamma_gamma(summary.frequency, summary.monetary)
    return ValueModel(as_of, bgnbd, gg), summary


def expected_spend(
    orders: pd.DataFrame, as_of: pd.Timestamp, horizons=HORIZONS, *, interval: bool = True
) -> pd.DataFrame:
    """Per shopper with an order before `as_of` (indexed by user id): `expected_spend_<h>d`
    for each horizon, with `_low` and `_high` (the 80% interval) when `interval`."""
    model, summary = fit_value(orders, as_of)
    out = {}
    for h in horizons:
        pred = model.predict(summary, h, interval=interval)
        out[f"expected_spend_{h}d"] = pred.expected_spend
        if interval:
            out[f"expected_spend_{h}d_low"] = pred.expected_spend_low
            out[f"expected_spend_{h}d_high"] = pred.expected_spend_high
    return pd.DataFrame(out, index=summary.index)


def realised_spend(
    orders: pd.DataFrame, as_of: pd.Timestamp, horizon: int, data_end: pd.Timestamp
) -> pd.Series:
    """Each shopper's spend in [as_of, as_of + horizon days); refuses a window running past the
    data's end rather than shortening it."""
    end = as_of + pd.Timedelta(days=horizon)
    if end > data_end:
        raise ValueError(
            f"the {horizon}-day window after {as_of:%Y-%m-%d} runs to {end:%Y-%m-%d}, past the "
            f"data's end ({data_end:%Y-%m-%d}); pick an earlier as-of date"
        )
    o = orders[(orders.ordered_at >= as_of) & (orders.ordered_at < end)]
    return o.groupby("user_id").amount.sum()


def spend_metrics(
    predicted: pd.Series,
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    data_end: pd.Timestamp,
    horizon: int,
) -> dict[str, object]:
    """Predicted spend per shopper (indexed by user id) against the spend realised in `horizon`
    days after `as_of` (0 for those who bought nothing): mean absolute error, Spearman
    correlation and both totals."""
    realised = realised_spend(orders, as_of, horizon, data_end)
    actual = realised.reindex(predicted.index, fill_value=0.0).to_numpy(float)
    pred = predicted.to_numpy(float)
    return {
        "as_of": f"{as_of:%Y-%m-%d}",
        "horizon_days": horizon,
        "shoppers": len(pred),
        "mae": float(np.abs(pred - actual).mean()),
        "spearman": float(spearmanr(pred, actual).statistic),
        "predicted_total": float(pred.sum()),
        "realised_total": float(actual.sum()),
    }


def evaluate_value(
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    data_end: pd.Timestamp,
    horizon: int = 90,
    users: pd.Index | None = None,
) -> dict[str, object]:
    """BG/NBD x Gamma-Gamma's expected spend in `horizon` days after `as_of` (fitted on the
    orders before it) against the spend realised then (`spend_metrics`), over every shopper
    with an order before `as_of`, or over `users` among them."""
    realised_spend(orders, as_of, horizon, data_end)  # refuses a short window before fitting
    model, summary = fit_value(orders, as_of)
    pred = model.predict(summary, horizon, interval=False).expected_spend
    if users is not None:
        pred = pred[pred.index.isin(users)]
    gg = model.gamma_gamma
    return {
        "model": "bgnbd_gamma_gamma",
        **spend_metrics(pred, orders, as_of, data_end, horizon),
        "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v},
    }


def probability_spend(
    probability: pd.Series, orders: pd.DataFrame, as_of: pd.Timestamp
) -> pd.Series:
    """A simple spend estimate from a propensity model: its probability of an order within
    the horizon (indexed by user id) times the shopper's mean spend per order day before
    `as_of`. It counts at most one order in the horizon, so it runs low for frequent buyers;
    a shopper without an order before `as_of` gets the population's mean."""
    o = orders[orders.ordered_at < as_of]
    daily = o.groupby([o.user_id, o.ordered_at.dt.floor("D")]).amount.sum()
    mean = daily.groupby(level=0).mean()
    value = mean.reindex(probability.index).fillna(float(daily.mean()))
    return probability * value


__all__ = [
    "BTYDFitError",
    "GammaGammaParams",
    "ValueFitError",
    "ValueModel",
    "evaluate_value",
    "expected_order_value",
    "expected_spend",
    "fit_gamma_gamma",
    "fit_value",
    "probability_spend",
    "realised_spend",
    "spend_metrics",
    "value_summary",
]
