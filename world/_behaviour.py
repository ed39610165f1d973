"""The shoppers' true response functions, shared by the simulator and the oracle.

Both call these and nothing else for purchase, lapse, win-back and coupon probabilities, so the
oracle computes exactly the process the simulator runs.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from scipy.special import ndtr, ndtri

from cadence.world import _params as P


def calendar(start: dt.date, n_days: int) -> np.ndarray:
    """Demand multiplier per day: a yearly wave, the weekly rhythm and shopping festivals."""
    dates = np.datetime64(start, "D") + np.arange(n_days)
    doy = (dates - dates.astype("datetime64[Y]")).astype(int)
    weekday = (dates.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    mult = (1 + 0.15 * np.sin(2 * np.pi * (doy - 100) / 365)) * P.WEEKDAY[weekday]
    months = dates.astype("datetime64[M]").astype(int) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    for month, day, length, boost in P.FESTIVALS:
        # Demand builds over the days before the festival and peaks on it.
        in_run = (months == month) & (dom > day - length) & (dom <= day)
        mult = np.where(in_run, mult * boost, mult)
    return mult


def is_campaign_day(day: np.ndarray | int) -> np.ndarray:
    day = np.asarray(day)
    return (day >= P.CAMPAIGN_FIRST) & ((day - P.CAMPAIGN_FIRST) % P.CAMPAIGN_EVERY == 0)


def issue_prob(days_since_order: np.ndarray) -> np.ndarray:
    """Chance a campaign sends a shopper a coupon; `inf` means never ordered."""
    return np.where(days_since_order >= P.LAPSED_DAYS, P.ISSUE_LAPSED, P.ISSUE_ACTIVE)


def impulse_prob(
    engagement: np.ndarray,
    interested: np.ndarray,
    coupon: np.ndarray,
    response: np.ndarray,
    mult: float | np.ndarray,
) -> np.ndarray:
    """Daily probability of an impulse order."""
    base = np.where(interested, P.IMPULSE_INTERESTED, P.IMPULSE_DORMANT) * engagement
    return np.minimum(base * mult * (1 + P.COUPON_LIFT * response * coupon), P.PROB_CAP)


def interest_on_prob(engagement: np.ndarray, coupon: np.ndarray, response: np.ndarray):
    """Daily probability that a dormant shopper becomes interested (a coupon tempts)."""
    return np.minimum(
        P.INTEREST_ON * engagement * (1 + P.COUPON_LIFT * response * coupon), P.PROB_CAP
    )


def churn_prob(base: np.ndarray, n_bad: np.ndarray) -> np.ndarray:
    """Daily probability that an active shopper lapses, raised by bad deliveries."""
    return np.minimum(base * (1 + P.CHURN_PER_BAD * np.minimum(n_bad, P.CHURN_BAD_CAP)), 1.0)


def lapse_after_order_prob(first: np.ndarray, n_orders: np.ndarray) -> np.ndarray:
    """Chance of lapsing after a shopper's `n_orders`-th order: loyalty grows with each one."""
    return first / np.sqrt(n_orders)


def winback_prob(
    base: np.ndarray, coupon: np.ndarray, response: np.ndarray, mult: float | np.ndarray
) -> np.ndarray:
    """Daily probability that a lapsed shopper comes back with an order (a coupon tempts)."""
    return np.minimum(base * mult * (1 + P.COUPON_LIFT * response * coupon), P.PROB_CAP)


def gap_std(mean: np.ndarray, category: np.ndarray | int) -> np.ndarray:
    """The spread of one gap for a shopper whose mean cycle in that category is `mean`."""
    return P.CYCLE_CV[category] * mean


def gap_survival(a: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """P(G >= a) for the gap G = max(1, round(N(mean, std))) in whole days."""
    return np.where(a <= 1, 1.0, 1.0 - ndtr((a - 0.5 - mean) / std))


def sample_gap(
    uniform: np.ndarray, mean: np.ndarray, std: np.ndarray, at_least: np.ndarray | None = None
) -> np.ndarray:
    """G from uniforms; with `at_least`, conditioned on G >= at_least (by inverse CDF)."""
    lo = np.zeros_like(mean) if at_least is None else ndtr((at_least - 0.5 - mean) / std)
    u = lo + (1 - lo) * uniform
    z = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
    gap = np.rint(mean + std * z)
    if at_least is not None:
        gap = np.maximum(gap, at_least)  # guards the clip at the far tail only
    return np.maximum(gap, 1).astype(np.int64)
