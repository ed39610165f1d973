"""Random streams per shopper and per purpose, so that a campaign changes only what it touches.

Every draw the simulation makes on a day is named by its purpose (`"churn"`, `"ship.transit"`...)
and keyed by the shopper it is about, so a shopper's draws never depend on what others did:
an offer that makes one shopper order leaves every other shopper's churn, visits and parcels
drawn exactly as before (they meet only through shared stock and dispatch capacity).

* `vec(purpose, shape)`: one uniform per shopper (and column), for draws every shopper gets each
  day; a NumPy generator seeded by (world seed, purpose, day).
* `keyed(purpose, users, k)`: one uniform per event, keyed by (shopper, k), k counting the
  shopper's events of that purpose that day (`occurrence`); a counter-based hash (SplitMix64's
  finaliser), so it needs no state and no order.

The inverse transforms below turn uniforms into the distributions the simulation uses.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.special import ndtri
from scipy.stats import poisson as _poisson

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def _pid(purpose: str) -> int:
    return zlib.crc32(purpose.encode())


class Streams:
    """The draws of one day of one world."""

    def __init__(self, seed: int, day: int) -> None:
        self.seed = seed
        self.day = day

    def vec(self, purpose: str, shape: int | tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng([self.seed, _pid(purpose), self.day]).random(shape)

    def keyed(self, purpose: str, users: np.ndarray, k: np.ndarray | int = 0) -> np.ndarray:
        with np.errstate(over="ignore"):
            head = _mix(np.array([(self.seed << 32) ^ _pid(purpose), self.day], dtype=np.uint64))
            base = _mix(head[0] ^ _mix(head[1]))
            key = (np.asarray(users, dtype=np.uint64) << np.uint64(24)) ^ np.asarray(
                k, dtype=np.uint64
            )
            x = _mix(_mix(key ^ base))
        return (x >> _S11).astype(np.float64) * (1.0 / (1 << 53))


def occurrence(users: np.ndarray) -> np.ndarray:
    """For each entry, how many entries of the same shopper come before it (0, 1, 2...)."""
    users = np.asarray(users)
    order = np.argsort(users, kind="stable")
    s = users[order]
    idx = np.arange(s.size)
    first = np.r_[True, s[1:] != s[:-1]] if s.size else np.zeros(0, dtype=bool)
    rank = idx - np.maximum.accumulate(np.where(first, idx, 0)) if s.size else idx
    out = np.empty(s.size, dtype=np.int64)
    out[order] = rank
    return out


def normal(u: np.ndarray, mean=0.0, sd=1.0) -> np.ndarray:
    return mean + sd * ndtri(np.clip(u, 1e-12, 1 - 1e-12))


def lognormal(u: np.ndarray, mean=0.0, sigma=1.0) -> np.ndarray:
    return np.exp(normal(u, mean, sigma))


def integers(u: np.ndarray, low: int, high: int) -> np.ndarray:
    """Integers in [low, high)."""
    return low + np.minimum((u * (high - low)).astype(np.int64), high - low - 1)


def choice(u: np.ndarray, values, p) -> np.ndarray:
    cum = np.cumsum(p)
    return np.asarray(values)[
        np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(cum) - 1)
    ]


def poisson(u: np.ndarray, lam) -> np.ndarray:
    """Poisson(lam) by inversion: small rates by summing the pmf, large ones through SciPy."""
    lam = np.broadcast_to(np.asarray(lam, dtype=float), np.shape(u))
    out = np.zeros(np.shape(u), dtype=np.int64)
    big = lam > 20
    if big.any():
        out[big] = _poisson.ppf(u[big], lam[big]).astype(np.int64)
    todo = np.flatnonzero(~big)
    p = np.exp(-lam[todo])
    cdf = p.copy()
    k = 0
    while todo.size:
        more = u[todo] > cdf
        todo, p, cdf = todo[more], p[more], cdf[more]
        k += 1
        out[todo] = k
        p = p * lam[todo] / k
        cdf = cdf + p
        if k > 200:  # only rounding can leave u above the whole pmf
            break
    return out
