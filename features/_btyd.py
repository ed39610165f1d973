"""BG/NBD (Fader, Hardie and Lee, 2005), fitted fast: a vectorised likelihood with its analytic
gradient, identical (frequency, recency, T) histories collapsed into weights, L-BFGS-B on the
log-parameters.

Inputs are per shopper: `frequency` x (repeat purchase days: distinct order days minus one),
`recency` t_x (time from the first to the last order day) and `T` (time from the first order
to the moment of prediction), all in one unit (Cadence uses days). The objective is the one
`lifetimes.BetaGeoFitter` minimises: the mean negative log-likelihood, with time rescaled so the
oldest shopper has T = 1, plus `penalizer * sum(params**2)` on the rescaled parameters; the same
data and penalizer give the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1
from threadpoolctl import threadpool_limits

# The log-parameters are kept in a box: exp(+-20) is far beyond any sensible fit, and the box
# keeps the optimiser away from overflow when the data barely identify a parameter.
_LOG_BOUND = 20.0


class BTYDFitError(ValueError):
    """The history cannot identify a BG/NBD fit (too few shoppers, nobody repeated, no optimum)."""


@dataclass(frozen=True)
class BGNBDParams:
    """r, alpha: the Gamma prior of the purchase rate; a, b: the Beta prior of the drop-out
    probability after each purchase. `alpha` is in the inputs' time unit."""

    r: float
    alpha: float
    a: float
    b: float

    def as_array(self) -> np.ndarray:
        return np.array([self.r, self.alpha, self.a, self.b])


@dataclass(frozen=True)
class BGNBDFit:
    params: BGNBDParams
    neg_log_likelihood: float  # the minimised objective (per shopper, rescaled time, penalty)
    n_customers: int
    n_patterns: int  # distinct (frequency, recency, T) histories the likelihood ran over
    iterations: int


def _inputs(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(frequency, dtype=float)
    tx = np.asarray(recency, dtype=float)
    t = np.asarray(T, dtype=float)
    return x, tx, t


def collapse(
    frequency, recency, T, weights=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Identical histories merged into one row with its count as weight (sorted, so the result
    does not depend on the order of the input rows)."""
    x, tx, t = _inputs(frequency, recency, T)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    order = np.lexsort((t, tx, x))  # several times faster than np.unique(axis=0)
    xs, txs, ts = x[order], tx[order], t[order]
    new = np.ones(len(x), dtype=bool)
    new[1:] = (np.diff(xs) != 0) | (np.diff(txs) != 0) | (np.diff(ts) != 0)
    group = np.cumsum(new) - 1
    counts = np.bincount(group, weights=w[order], minlength=int(new.sum()))
    return xs[new], txs[new], ts[new], counts


def _objective(
    log_params: np.ndarray,
    x: np.ndarray,
    tx: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    penalizer: float,
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood and its gradient in the log-parameters."""
    r, alpha, a, b = np.exp(log_params)
    rx = r + x
    repeat = x > 0
    bx1 = b + np.maximum(x, 1.0) - 1.0
    log_at = np.log(alpha + t)
    log_ax = np.log(alpha + tx)
    a1 = gammaln(rx) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -rx * log_at
    a4 = np.where(repeat, np.log(a) - np.log(bx1) - rx * log_ax, -np.inf)
    top = np.maximum(a3, a4)
    e3, e4 = np.exp(a3 - top), np.exp(a4 - top)
    ll = a1 + a2 + np.log(e3 + e4) + top
    w3 = e3 / (e3 + e4)  # the weight of "still alive at T" in the mixture
    w4 = 1.0 - w3
    g_r = digamma(rx) - digamma(r) + np.log(alpha) - w3 * log_at - w4 * log_ax
    g_alpha = r / alpha - w3 * rx / (alpha + t) - w4 * rx / (alpha + tx)
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    g_a = psi_ab - psi_abx + w4 / a
    g_b = psi_ab + digamma(b + x) - digamma(b) - psi_abx - w4 / bx1
    total = w.sum()
    params = np.array([r, alpha, a, b])
    grads = np.array([(w * g).sum() for g in (g_r, g_alpha, g_a, g_b)])
    value = -(w * ll).sum() / total + penalizer * (params**2).sum()
    grad = -grads * params / total + 2.0 * penalizer * params**2
    return float(value), grad


def fit_bgnbd(
    frequency, recency, T, *, penalizer: float = 0.0, weights=None, tol: float = 1e-10
) -> BGNBDFit:
    """Maximum likelihood BG/NBD parameters; raises `BTYDFitError` when there is nothing to fit
    (no shoppers, nobody with a repeat purchase) or the optimiser finds no optimum."""
    x, tx, t, w = collapse(frequency, recency, T, weights)
    if len(x) == 0 or w.sum() <= 0:
        raise BTYDFitError("BG/NBD needs at least one shopper")
    if not (np.isfinite(x).all() and np.isfinite(tx).all() and np.isfinite(t).all()):
        raise BTYDFitError("BG/NBD inputs must be finite")
    if (x < 0).any() or (tx < 0).any() or (tx > t).any():
        raise BTYDFitError("BG/NBD needs frequency >= 0 and 0 <= recency <= T")
    if not (x > 0).any():
        raise BTYDFitError("BG/NBD needs at least one shopper with a repeat purchase")
    if t.max() <= 0:
        raise BTYDFitError("BG/NBD needs a shopper with T > 0")
    scale = 1.0 / t.max()  # as lifetimes: the penalty then does not depend on the time unit
    args = (x, tx * scale, t * scale, w, penalizer)
    # The optimiser's BLAS calls are on 4-vectors: threads only cost (twice the time on 2 busy
    # cores), so it runs on one.
    with threadpool_limits(1):
        res = minimize(
            _objective,
            x0=np.full(4, 0.1),
            args=args,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
            options={"ftol": tol * 1e-2, "gtol": tol, "maxiter": 2000, "maxcor": 20},
        )
    # L-BFGS-B stops "abnormally" when a line search cannot improve at machine precision, which
    # at an optimum is success; a gradient still far from zero is not.
    _, grad = _objective(res.x, *args)
    if not np.isfinite(res.fun) or np.abs(grad).max() > 1e-5:
        raise BTYDFitError(f"BG/NBD did not converge ({res.message})")
    r, alpha, a, b = np.exp(res.x)
    params = BGNBDParams(float(r), float(alpha / scale), float(a), float(b))
    return BGNBDFit(params, float(res.fun), int(round(w.sum())), len(x), int(res.nit))


def p_alive(params: BGNBDParams, frequency, recency, T) -> np.ndarray:
    """P(the shopper has not dropped out by T); 1 for a shopper who never repeated."""
    x, tx, t = _inputs(frequency, recency, T)
    r, alpha, a, b = params.as_array()
    log_odds_dead = (r + x) * (np.log(alpha + t) - np.log(alpha + tx)) + np.log(
        a / (b + np.maximum(x, 1.0) - 1.0)
    )
    return np.where(x == 0, 1.0, expit(-log_odds_dead))


def expected_orders(params: BGNBDParams, horizon: float, frequency, recency, T) -> np.ndarray:
    """Expected repeat purchases in (T, T + horizon] given the history: the BG/NBD conditional
    expectation (Fader, Hardie and Lee, 2005, eq. 10; lifetimes'
    `conditional_expected_number_of_purchases_up_to_time`).

    Equation 10's 2F1(r+x, b+x; a+b+x-1; z) overflows for large x (lifetimes then returns NaN).
    Its product with ((alpha+T)/(alpha+T+h))^(r+x) is computed instead through Euler's
    transformation, (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose first two parameters do
    not grow with x; the original form is used only where that one is not finite.
    """
    x, tx, t = _inputs(frequency, recency, T)
    r, alpha, a, b = params.as_array()
    c = a + b + x - 1.0
    z = horizon / (alpha + t + horizon)
    with np.errstate(all="ignore"):
        g = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        direct = hyp2f1(r + x, b + x, c, z) * np.exp(
            (r + x) * np.log((alpha + t) / (alpha + t + horizon))
        )
        g = np.where(np.isfinite(g), g, direct)
        e = c / (a - 1.0) * (1.0 - g) * p_alive(params, x, tx, t)
    return np.maximum(e, 0.0)


def days_to_next(params: BGNBDParams, frequency, T) -> np.ndarray:
    """(alpha + T) / (r + x): the reciprocal of the posterior mean purchase rate of a shopper
    who is still alive, i.e. the mean gap between orders at that rate (in the inputs' unit).
    It is not the posterior mean of the waiting time, which is infinite when r + x <= 1."""
    x = np.asarray(frequency, dtype=float)
    t = np.asarray(T, dtype=float)
    return (params.alpha + t) / (params.r + x)


def simulate_bgnbd(
    params: BGNBDParams, T: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(frequency, recency) drawn from BG/NBD for shoppers of ages `T`, vectorised: a rate
    lambda ~ Gamma(r, alpha), a drop-out probability p ~ Beta(a, b) tried after each repeat
    purchase (so the number of repeats before dropping out is Geometric(p)), repeat purchases
    a Poisson process; given n purchases in (0, T], the x-th of them falls at T * Beta(x, n-x+1).
    For checking the fitter on data with known parameters."""
    t = np.asarray(T, dtype=float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, len(t))
    p = rng.beta(params.a, params.b, len(t))
    n = rng.poisson(lam * t)
    x = np.minimum(n, rng.geometric(p))
    recency = np.zeros(len(t))
    rep = x > 0
    recency[rep] = t[rep] * rng.beta(x[rep], n[rep] - x[rep] + 1)
    return x.astype(float), recency
