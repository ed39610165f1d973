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

That simulation is too wide on real logs (its 80% interval held 94% of CDNOW's 90-day spend),
so `expected_spend` calibrates it by split conformal prediction on the level, one horizon before
the as-of date and on the orders before it only (`calibrate_interval`): the models fitted then
are judged on the window that ends at the as-of, and each shopper's interval takes the level
that held 80% of their group's realised spend there. Groups go by the simulated probability of
any spend, because most shoppers spend nothing in a window: an interval holding 0 covers them
whatever its level, so one level for all would shrink the likely buyers' intervals to points to
offset them. Where the history before the calibration as-of is too short, the nominal interval
stays and `attrs["interval"]` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
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
MIN_CALIBRATION = 100  # shoppers the interval's calibration window must hold
MIN_GROUP = 30  # calibration shoppers a group needs for a level of its own
# Groups for the interval's calibration, by the simulated probability of any spend.
GROUP_EDGES = (0.2, 0.5)
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
        self,
        summary: pd.DataFrame,
        horizon: int,
        *,
        interval: bool = True,
        seed: int = 0,
        level: float | IntervalCalibration = LEVEL,
    ) -> pd.DataFrame:
        """Per shopper of `summary` (from `value_summary` at `as_of`): expected orders and order
        value, expected spend in `horizon` days, and (with `interval`) the simulated interval
        at `level` (the nominal 80%, or a level `calibrate_interval` found)."""
        x, tx, t, m = _inputs(summary)
        bg = self.bgnbd.params_
        n = expected_orders(bg, horizon, x, tx, t)
        value = expected_order_value(self.gamma_gamma, x, m)
        out = pd.DataFrame(
            {"expected_orders": n, "expected_order_value": value, "expected_spend": n * value},
            index=summary.index,
        )
        if interval:
            (low, high), _ = self.intervals(summary, horizon, [level], seed=seed)
            out["expected_spend_low"], out["expected_spend_high"] = low[0], high[0]
        return out

    def _draws(self, x, tx, t, m, horizon, seed):
        """Simulated spends in `horizon` days (see the module's note): (rows, draws) per batch
        of shoppers, with the batch's slice."""
        rng = np.random.default_rng(seed)
        bg, gg = self.bgnbd.params_, self.gamma_gamma
        alive = p_alive(bg, x, tx, t)
        usable = (x > 0) & (np.nan_to_num(m, nan=0.0) > 0)
        xm = np.where(usable, x * np.nan_to_num(m, nan=0.0), 0.0)
        xg = np.where(usable, x, 0.0)
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
            yield sl, spend

    def intervals(
        self,
        summary: pd.DataFrame,
        horizon: int,
        levels: Sequence[float | IntervalCalibration],
        *,
        seed: int = 0,
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """From one simulation, each level's interval: the simulated quantiles at (1 - l) / 2
        and (1 + l) / 2 of each shopper's spend, as the inverse of the simulated distribution
        function (so `interval_scores` is exact), l being the level, or with an
        `IntervalCalibration` the level of the shopper's group. Returns the lows and highs
        (levels x shoppers) and each shopper's simulated probability of any spend."""
        x, tx, t, m = _inputs(summary)
        low, high = np.empty((len(levels), len(x))), np.empty((len(levels), len(x)))
        buys = np.empty(len(x))
        for sl, spend in self._draws(x, tx, t, m, horizon, seed):
            spend.sort(axis=1)
            buys[sl] = (spend > 0).mean(axis=1)
            for i, level in enumerate(levels):
                lv = level.levels(buys[sl]) if isinstance(level, IntervalCalibration) else level
                lv = np.broadcast_to(np.asarray(lv, float), buys[sl].shape)
                low[i, sl] = _sorted_quantile(spend, (1.0 - lv) / 2.0)
                high[i, sl] = _sorted_quantile(spend, (1.0 + lv) / 2.0)
        return (low, high), buys

    def interval_scores(
        self, summary: pd.DataFrame, horizon: int, realised, *, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per shopper: the smallest central level whose simulated interval (as `predict` gives
        it) holds the realised spend, max(0, 1 - 2 F(r), 2 F(r-) - 1) with F the simulated
        distribution function (a split-conformal score on the scale of levels); and the
        simulated probability of any spend, which sets the shopper's calibration group."""
        x, tx, t, m = _inputs(summary)
        r = np.asarray(realised, float)
        score, buys = np.empty(len(x)), np.empty(len(x))
        for sl, spend in self._draws(x, tx, t, m, horizon, seed):
            at_most = (spend <= r[sl, None]).mean(axis=1)
            below = (spend < r[sl, None]).mean(axis=1)
            score[sl] = np.maximum(0.0, np.maximum(1.0 - 2.0 * at_most, 2.0 * below - 1.0))
            buys[sl] = (spend > 0).mean(axis=1)
        return score, buys


def _sorted_quantile(sorted_draws: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise inverse distribution function of sorted draws at q (numpy's `inverted_cdf`):
    the smallest draw with at least a share q of the draws at or below it."""
    n = sorted_draws.shape[1]
    k = np.clip(np.ceil(n * np.asarray(q, float) - 1e-9).astype(int) - 1, 0, n - 1)
    return np.take_along_axis(sorted_draws, k[:, None], axis=1)[:, 0]


def _inputs(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        summary.frequency.to_numpy(float),
        summary.recency.to_numpy(float),
        summary["T"].to_numpy(float),
        summary.monetary.to_numpy(float),
    )


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


def _conformal_level(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest of n scores (split conformal), a hair above it: at
    exactly that level its shopper may sit on the interval's edge. 1 when n is too small."""
    n = len(scores)
    k = int(np.ceil((n + 1) * level))
    if k > n:
        return 1.0
    return min(1.0, float(np.sort(scores)[k - 1]) + 1e-9)


@dataclass(frozen=True)
class IntervalCalibration:
    """Interval levels that held `level` of the realised spend one horizon before the as-of
    date, per group of shoppers by the simulated probability of any spend in the horizon
    (edges `GROUP_EDGES`; a group with fewer than `MIN_GROUP` calibration shoppers keeps the
    nominal level). BG/NBD and Gamma-Gamma are fitted at `calibration_as_of` (the as-of minus
    the horizon) and their simulated intervals judged on the spend of the window that ends at
    the as-of.

    Why groups: most shoppers spend nothing in a window, and any interval holding 0 covers
    them. One level for everyone would shrink the likely buyers' intervals to points to make
    up for the silent majority's coverage (`pooled_level`, kept for comparison); per group,
    the likely buyers keep a real 80% range and the unlikely ones an interval that holds 0."""

    horizon_days: int
    level: float
    group_levels: tuple[float, ...]
    group_shoppers: tuple[int, ...]
    pooled_level: float
    calibration_as_of: pd.Timestamp
    shoppers: int
    nominal_coverage: float

    def levels(self, buys) -> np.ndarray:
        """Each shopper's level, from their simulated probability of any spend."""
        return np.asarray(self.group_levels)[spending_group(buys)]

    def as_dict(self) -> dict[str, object]:
        names = group_names()
        return {
            "horizon_days": self.horizon_days,
            "level": self.level,
            "group_levels": dict(zip(names, self.group_levels, strict=True)),
            "group_shoppers": dict(zip(names, self.group_shoppers, strict=True)),
            "pooled_level": self.pooled_level,
            "calibration_as_of": f"{self.calibration_as_of:%Y-%m-%d}",
            "calibration_shoppers": self.shoppers,
            "calibration_nominal_coverage": self.nominal_coverage,
        }


def spending_group(buys) -> np.ndarray:
    """Each shopper's calibration group (0, 1, ...) by their simulated chance of any spend."""
    return np.searchsorted(GROUP_EDGES, np.asarray(buys, float), side="right")


def group_names() -> list[str]:
    """'p_buy<0.2', '0.2<=p_buy<0.5', 'p_buy>=0.5' for the default edges."""
    e = GROUP_EDGES
    inner = [f"{lo:g}<=p_buy<{hi:g}" for lo, hi in zip(e[:-1], e[1:], strict=True)]
    return [f"p_buy<{e[0]:g}", *inner, f"p_buy>={e[-1]:g}"]


def calibrate_interval(
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon: int,
    *,
    level: float = LEVEL,
    seed: int = 0,
    min_shoppers: int = MIN_CALIBRATION,
) -> IntervalCalibration:
    """Split-conformal calibration of the simulated interval's level, on the orders before
    `as_of` only: the models are fitted at as_of - horizon, each shopper then gets the smallest
    level whose interval held their realised spend (`ValueModel.interval_scores`), and each
    group's level is the ceil((n + 1) level)-th smallest of its n scores. Raises a ValueError
    (`ValueFitError` or `BTYDFitError`) when the history before the calibration as-of cannot
    fit the models or holds fewer than `min_shoppers` shoppers."""
    at = as_of - pd.Timedelta(days=horizon)
    before = orders[orders.ordered_at < as_of]
    if not (before.ordered_at < at).any():
        raise ValueFitError(
            f"calibrating the {horizon}-day interval needs orders before {at:%Y-%m-%d} "
            f"({horizon} days before {as_of:%Y-%m-%d}); the data start "
            f"{orders.ordered_at.min():%Y-%m-%d}"
        )
    model, summary = fit_value(before, at)
    if len(summary) < min_shoppers:
        raise ValueFitError(
            f"calibrating the {horizon}-day interval needs at least {min_shoppers} shoppers "
            f"with an order before {at:%Y-%m-%d}; the data hold {len(summary)}"
        )
    realised = realised_spend(before, at, horizon, as_of).reindex(summary.index, fill_value=0.0)
    scores, buys = model.interval_scores(summary, horizon, realised, seed=seed)
    group = spending_group(buys)
    levels, sizes = [], []
    for g in range(len(GROUP_EDGES) + 1):
        held = scores[group == g]
        sizes.append(len(held))
        levels.append(_conformal_level(held, level) if len(held) >= MIN_GROUP else level)
    return IntervalCalibration(
        horizon_days=horizon,
        level=level,
        group_levels=tuple(levels),
        group_shoppers=tuple(sizes),
        pooled_level=_conformal_level(scores, level),
        calibration_as_of=at,
        shoppers=len(scores),
        nominal_coverage=float((scores <= level).mean()),
    )


def expected_spend(
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    horizons=HORIZONS,
    *,
    interval: bool = True,
    calibrate: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Per shopper with an order before `as_of` (indexed by user id): `expected_spend_<h>d`
    for each horizon, with `_low` and `_high` (the 80% interval) when `interval`.

    With `calibrate`, each horizon's interval takes the levels `calibrate_interval` finds;
    where the history is too short for that, the nominal (uncalibrated) interval stays. What
    was done per horizon is in `attrs["interval"]` (`{"90d": {"calibrated": bool, ...,
    "note": ...}}`, as `interval_note` gives it)."""
    model, summary = fit_value(orders, as_of)
    out, notes = {}, {}
    for h in horizons:
        level: float | IntervalCalibration = LEVEL
        if interval:
            cal, notes[f"{h}d"] = interval_note(orders, as_of, h, calibrate=calibrate, seed=seed)
            level = cal or LEVEL
        pred = model.predict(summary, h, interval=interval, level=level, seed=seed)
        out[f"expected_spend_{h}d"] = pred.expected_spend
        if interval:
            out[f"expected_spend_{h}d_low"] = pred.expected_spend_low
            out[f"expected_spend_{h}d_high"] = pred.expected_spend_high
    frame = pd.DataFrame(out, index=summary.index)
    if interval:
        frame.attrs["interval"] = notes
    return frame


def interval_note(
    orders: pd.DataFrame, as_of: pd.Timestamp, horizon: int, *, calibrate: bool, seed: int = 0
) -> tuple[IntervalCalibration | None, dict[str, object]]:
    """The calibration of the `horizon`-day interval at `as_of` (None where there is none) and
    what was done: calibrated, with `IntervalCalibration.as_dict()`'s fields, or the nominal
    level with the reason."""
    if not calibrate:
        return None, {"calibrated": False, "level": LEVEL, "note": "calibration not asked for"}
    try:
        cal = calibrate_interval(orders, as_of, horizon, seed=seed)
    except ValueError as exc:  # ValueFitError or BTYDFitError: too little history
        return None, {
            "calibrated": False,
            "level": LEVEL,
            "note": f"the {horizon}-day interval is the uncalibrated simulated one: {exc}",
        }
    return cal, {"calibrated": True, **cal.as_dict(), "note": ""}


def interval_coverage(low, high, realised) -> dict[str, float]:
    """The share of shoppers whose realised spend lies in [low, high], and the mean width."""
    lo, hi, r = (np.asarray(a, float) for a in (low, high, realised))
    return {
        "coverage": float(((lo <= r) & (r <= hi)).mean()) if len(r) else float("nan"),
        "mean_width": float((hi - lo).mean()) if len(r) else float("nan"),
    }


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


def spend_metrics(predicted: pd.Series, realised: pd.Series) -> dict[str, object]:
    """Predicted spend per shopper (indexed by user id) against the realised spend
    (`realised_spend`; 0 for a shopper it lacks): mean absolute error, Spearman correlation
    and both totals."""
    pred = predicted.to_numpy(float)
    actual = realised.reindex(predicted.index, fill_value=0.0).to_numpy(float)
    return {
        "shoppers": len(pred),
        "mae": float(np.abs(pred - actual).mean()),
        "spearman": spearman_correlation(pred, actual),
        "predicted_total": float(pred.sum()),
        "realised_total": float(actual.sum()),
    }


def spearman_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's correlation; NaN where either side is constant (no ranking to compare)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


__all__ = [
    "BTYDFitError",
    "GammaGammaParams",
    "IntervalCalibration",
    "ValueFitError",
    "ValueModel",
    "calibrate_interval",
    "expected_order_value",
    "expected_spend",
    "fit_gamma_gamma",
    "fit_value",
    "interval_coverage",
    "interval_note",
    "realised_spend",
    "spearman_correlation",
    "spend_metrics",
    "spending_group",
    "value_summary",
]
