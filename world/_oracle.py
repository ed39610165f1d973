"""The oracle: each shopper's true probability of at least one order in the next h days.

Computed exactly from the simulator's state at the snapshot (the start of day `day`), by
following the simulator's daily steps 1-5 along the paths on which no order happens yet:

* replenishment needs are independent renewal processes, each ending with a daily hazard; a
  due replenishment is bought here with the shopper's loyalty, else skipped and the cycle runs
  on, so a need may fall due more than once in the window;
* impulse orders come from a hidden two-state interest chain, crossed with the coupon state
  (campaigns and expiry follow a fixed calendar);
* an active shopper lapses with a daily hazard that steps up as bad deliveries already in flight
  arrive; a lapsed shopper comes back, with an order, at a daily win-back rate a coupon raises.
  (Lapsing after an order happens only on paths with an order, so it never enters.)

The no-order paths are a Markov chain over (active with interest i, or lapsed) x (coupon c).
Replenishment runs independently of it, so an active path survives day k's replenishments with
the conditional probability R(k+1) / R(k), R(k) being the chance that no need is bought here on
days 0..k-1. P(no order in h days) is the chain's mass left after day h-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadence.world import _behaviour as B
from cadence.world import _params as P


@dataclass(frozen=True)
class OracleInputs:
    day: int
    eligible: np.ndarray  # shoppers who can act from `day` on
    alive: np.ndarray  # active, not lapsed
    churn_base: np.ndarray
    winback: np.ndarray
    loyalty: np.ndarray
    n_bad: np.ndarray
    bad_on: dict[int, np.ndarray]  # day -> shoppers whose bad delivery counts from that day
    need: np.ndarray
    last_renewal: np.ndarray
    gap_mean: np.ndarray  # mean of the gap running now (a stockpile's is longer)
    cycle_mean: np.ndarray
    interested: np.ndarray
    coupon: np.ndarray
    coupon_until: np.ndarray
    last_order_day: np.ndarray
    engagement: np.ndarray
    coupon_response: np.ndarray
    mult: np.ndarray  # calendar multiplier per day, covering day + max horizon


def oracle_probabilities(
    x: OracleInputs, horizons: tuple[int, ...]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Returns the shoppers covered (eligible ones) and P(order within h days) per horizon."""
    who = np.flatnonzero(x.eligible)
    none = _no_order(x, who, max(horizons))
    return who, [np.clip(1.0 - none[:, h], 0.0, 1.0) for h in horizons]


def _no_order(x: OracleInputs, users: np.ndarray, h: int) -> np.ndarray:
    """P(no order on days 0..k-1) for k = 0..h, per shopper."""
    active = x.alive[users]
    eng = x.engagement[users]
    resp = x.coupon_response[users]
    winback = x.winback[users]
    churn = _churn(x, users, h)
    keep = _no_replenishment(x, users[active], h)
    step = np.ones((users.size, h))
    with np.errstate(divide="ignore", invalid="ignore"):
        step[active] = np.where(keep[:, :-1] > 0, keep[:, 1:] / keep[:, :-1], 0.0)

    interested = x.interested[users] & active
    coupon = x.coupon[users] & (x.coupon_until[users] > x.day)
    until = x.coupon_until[users]
    since = x.day - x.last_order_day[users]
    # Masses of the no-order paths: active by (interest, coupon), and lapsed by coupon.
    a = {
        (i, c): (active & (interested == i) & (coupon == c)).astype(float)
        for i in (0, 1)
        for c in (0, 1)
    }
    lapsed = {c: (~active & (coupon == c)).astype(float) for c in (0, 1)}
    out = np.ones((users.size, h + 1))
    until_new = None
    for k in range(h):
        d = x.day + k
        # Step 2: coupons expire, then a campaign may issue new ones.
        expire = (until <= d) if until_new is None else np.full(users.size, until_new <= d)
        for lo, hi in (((0, 0), (0, 1)), ((1, 0), (1, 1))):
            moved = np.where(expire, a[hi], 0.0)
            a[lo], a[hi] = a[lo] + moved, a[hi] - moved
        moved = np.where(expire, lapsed[1], 0.0)
        lapsed[0], lapsed[1] = lapsed[0] + moved, lapsed[1] - moved
        if B.is_campaign_day(d):
            p = B.issue_prob(since + k)
            for i in (0, 1):
                moved = a[(i, 0)] * p
                a[(i, 0)], a[(i, 1)] = a[(i, 0)] - moved, a[(i, 1)] + moved
            moved = lapsed[0] * p
            lapsed[0], lapsed[1] = lapsed[0] - moved, lapsed[1] + moved
            until_new = d + P.COUPON_DAYS
        # Step 3: the lapsed may come back (an order); then the active may lapse.
        for c in (0, 1):
            lapsed[c] = lapsed[c] * (1 - B.winback_prob(winback, np.float64(c), resp, x.mult[d]))
        for (i, c), mass in a.items():
            moved = mass * churn[:, k]
            a[(i, c)] = mass - moved
            lapsed[c] = lapsed[c] + moved
        # Steps 4-5: no replenishment and no impulse order today.
        for (i, c), mass in a.items():
            p_buy = B.impulse_prob(eng, np.bool_(i), np.float64(c), resp, x.mult[d])
            a[(i, c)] = mass * step[:, k] * (1 - p_buy)
        out[:, k + 1] = sum(a.values()) + lapsed[0] + lapsed[1]
        # Step 8: the interest chain moves on.
        for c in (0, 1):
            on = B.interest_on_prob(eng, np.float64(c), resp)
            m0, m1 = a[(0, c)], a[(1, c)]
            a[(0, c)] = m0 * (1 - on) + m1 * P.INTEREST_OFF
            a[(1, c)] = m0 * on + m1 * (1 - P.INTEREST_OFF)
    return out


def _churn(x: OracleInputs, users: np.ndarray, h: int) -> np.ndarray:
    """The daily lapse hazard c(k), k = 0..h-1, per shopper."""
    pos = np.full(x.alive.size, -1)
    pos[users] = np.arange(users.size)
    n_bad = x.n_bad[users].copy()
    base = x.churn_base[users]
    churn = np.repeat(B.churn_prob(base, n_bad)[:, None], h, axis=1)
    # Only shoppers with a bad delivery arriving in the window see their hazard change.
    for k in range(h):
        arriving = x.bad_on.get(x.day + k)
        if arriving is None:
            continue
        mine = pos[arriving]
        mine = mine[mine >= 0]
        np.add.at(n_bad, mine, 1)
        rows = np.unique(mine)
        churn[rows, k:] = B.churn_prob(base[rows], n_bad[rows])[:, None]
    return churn


def _no_replenishment(x: OracleInputs, users: np.ndarray, h: int) -> np.ndarray:
    """R(k), k = 0..h: no need is bought here on days 0..k-1, were the shopper active."""
    out = np.ones((users.size, h + 1))
    need = x.need[users]
    j = np.arange(h + 1)[None, :]
    for c in range(need.shape[1]):
        rows = np.flatnonzero(need[:, c])
        if not rows.size:
            continue
        u = users[rows]
        miss = (1.0 - x.loyalty[u])[:, None]
        mean = x.gap_mean[u, c][:, None]
        age = (x.day - x.last_renewal[u, c])[:, None]
        # The running gap falls due on day t with P(G = age + t | G >= age), for the whole-day
        # gap G = max(1, round(N(mean, std))).
        surv = B.gap_survival(age + j, mean, B.gap_std(mean, c))
        due = (surv[:, :-1] - surv[:, 1:]) / surv[:, :1]
        # A skipped due starts a fresh gap around the shopper's own cycle: due again on day t
        # if due on day s < t, skipped, and the fresh gap is t - s days.
        own = x.cycle_mean[u, c][:, None]
        fresh = B.gap_survival(j, own, B.gap_std(own, c))
        fresh_pmf = fresh[:, :-1] - fresh[:, 1:]  # P(G = m), m = 0..h-1 (0 for m = 0)
        for t in range(1, h):
            due[:, t] += miss[:, 0] * (due[:, :t] * fresh_pmf[:, t:0:-1]).sum(axis=1)
        # Bought here on day t: due, not skipped, and the need still there that day.
        keep = (1.0 - P.NEED_END_HAZARD[c]) ** j[:, 1:]
        out[rows, 1:] *= 1.0 - np.cumsum((1.0 - miss) * due * keep, axis=1)
    return out
