"""The oracle: each shopper's true probability of at least one order in the next h days.

Computed exactly from the simulator's state at the snapshot (the start of day `day`), by
following the simulator's daily steps 1-5 along the paths on which no order happens yet:

* replenishment needs are independent renewal processes, each ending with a daily hazard;
* impulse orders come from a hidden two-state interest chain, crossed with the coupon state
  (campaigns and expiry follow a fixed calendar, so a four-state chain covers it);
* churn removes the shopper before that day's purchases, with a hazard that steps up as
  bad deliveries already in flight arrive.

With N(k) the chance that no source fires on days 0..k-1 while alive, A(k) the chance of still
being alive after day k-1, and c(k) the churn hazard of day k:
P(no order in h days) = sum_{k<h} A(k) c(k) N(k) + A(h) N(h).
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
    alive: np.ndarray
    churn_base: np.ndarray
    n_bad: np.ndarray
    bad_on: dict[int, np.ndarray]  # day -> shoppers whose bad delivery counts from that day
    need: np.ndarray
    last_renewal: np.ndarray
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
    h_max = max(horizons)
    live = who[x.alive[who]]
    none = _no_source_event(x, live, h_max) if live.size else np.ones((0, h_max + 1))
    alive_after, churn = _churn_path(x, live, h_max)
    probs = []
    for h in horizons:
        p_none = (alive_after[:, :h] * churn[:, :h] * none[:, :h]).sum(axis=1)
        p_none += alive_after[:, h] * none[:, h]
        p = np.zeros(who.size)
        p[x.alive[who]] = np.clip(1.0 - p_none, 0.0, 1.0)
        probs.append(p)
    return who, probs


def _churn_path(x: OracleInputs, users: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A(k) for k = 0..h and c(k) for k = 0..h-1, per shopper."""
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
    alive_after = np.ones((users.size, h + 1))
    np.cumprod(1 - churn, axis=1, out=alive_after[:, 1:])
    return alive_after, churn


def _no_source_event(x: OracleInputs, users: np.ndarray, h: int) -> np.ndarray:
    """N(k), k = 0..h: no replenishment and no impulse order on days 0..k-1."""
    return _no_replenishment(x, users, h) * _no_impulse(x, users, h)


def _no_replenishment(x: OracleInputs, users: np.ndarray, h: int) -> np.ndarray:
    out = np.ones((users.size, h + 1))
    need = x.need[users]
    j = np.arange(h + 1)[None, :]
    for c in range(need.shape[1]):
        rows = np.flatnonzero(need[:, c])
        if not rows.size:
            continue
        u = users[rows]
        mean = x.cycle_mean[u, c][:, None]
        age = (x.day - x.last_renewal[u, c])[:, None]
        # P(G = age + j | G >= age), for the whole-day gap G = max(1, round(N(mean, std))).
        surv = B.gap_survival(age + j, mean, B.gap_std(mean, c))
        hit = (surv[:, :-1] - surv[:, 1:]) / surv[:, :1]
        # The need must also survive its daily ending check through that day.
        keep = (1.0 - P.NEED_END_HAZARD[c]) ** j[:, 1:]
        # Several needs are independent renewals, so their survivals multiply.
        out[rows, 1:] *= 1.0 - np.cumsum(hit * keep, axis=1)
    return out


def _no_impulse(x: OracleInputs, users: np.ndarray, h: int) -> np.ndarray:
    eng = x.engagement[users]
    resp = x.coupon_response[users]
    interested = x.interested[users]
    coupon = x.coupon[users] & (x.coupon_until[users] > x.day)
    until = x.coupon_until[users]
    since = x.day - x.last_order_day[users]
    # Masses of the no-order paths by (interest, coupon).
    m = {
        (0, 0): (~interested & ~coupon).astype(float),
        (0, 1): (~interested & coupon).astype(float),
        (1, 0): (interested & ~coupon).astype(float),
        (1, 1): (interested & coupon).astype(float),
    }
    out = np.ones((users.size, h + 1))
    until_new = None
    for k in range(h):
        d = x.day + k
        # Step 2: coupons expire, then a campaign may issue new ones.
        expire = (until <= d) if until_new is None else np.full(users.size, until_new <= d)
        for i in (0, 1):
            moved = np.where(expire, m[(i, 1)], 0.0)
            m[(i, 0)] = m[(i, 0)] + moved
            m[(i, 1)] = m[(i, 1)] - moved
        if B.is_campaign_day(d):
            p = B.issue_prob(since + k)
            for i in (0, 1):
                moved = m[(i, 0)] * p
                m[(i, 0)] = m[(i, 0)] - moved
                m[(i, 1)] = m[(i, 1)] + moved
            until_new = d + P.COUPON_DAYS
        # Step 5: no impulse order today.
        for (i, c), mass in m.items():
            p_buy = B.impulse_prob(eng, np.bool_(i), np.float64(c), resp, x.mult[d])
            m[(i, c)] = mass * (1 - p_buy)
        out[:, k + 1] = sum(m.values())
        # Step 8: the interest chain moves on.
        for c in (0, 1):
            on = B.interest_on_prob(eng, np.float64(c), resp)
            m0, m1 = m[(0, c)], m[(1, c)]
            m[(0, c)] = m0 * (1 - on) + m1 * P.INTEREST_OFF
            m[(1, c)] = m0 * on + m1 * (1 - P.INTEREST_OFF)
    return out
