"""Packing one group's orders into parcels, when together they pass the size limits.

A group is the mergeable orders leaving one node for one address with one carrier. Its parcels
are bins: orders share one only when together they fit the weight and volume limits and have a
wave in common (the latest slot any of them first reaches no later than the earliest last slot
keeping their promises, see `_waves`). The tariff charges per started kg of billed weight, so
a good packing fills bins to near the top of a kg bracket rather than just over one.

Groups of up to `_EXACT_UP_TO` orders are packed exactly: every split into bins is priced.
Larger ones are packed by first-fit decreasing, under each of three size orders and for each
weight of CO2 against cost in `_PACK_WEIGHTS`: each order goes to the bin it adds least to
(ties: the bin left nearest the top of its bracket), then single orders move between bins while
a move lowers the total. Either way, the split kept is the cheapest of its fixed set of
candidates at cost + co2_price * CO2, then the one of fewest bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

# Groups of up to this many orders are packed exactly (every split is priced: at most 203);
# larger ones by heuristics, tried for these weights of CO2 against cost (cost first, CO2
# first) whatever the price. Either way the cheapest of a fixed set of candidates at
# cost + co2_price * CO2 is kept, so raising the price can only move to one with less CO2.
_EXACT_UP_TO = 6
_PACK_WEIGHTS = (0.0, 1e4)


def pack(
    weight: np.ndarray,
    volume: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    per_kg: np.ndarray,
    *,
    first: float,
    nxt: float,
    pick: float,
    divisor: float,
    stop_kg: float,
    max_weight_kg: float,
    max_volume_cm3: float,
    co2_price: float,
) -> np.ndarray:
    """Bin of each order of one (node, address, carrier) group past the size limits; orders
    share a bin only when they fit the limits together and have a wave in common.

    `weight`, `volume`, `lo`, `hi` (first slot reached, last keeping the promise) and `per_kg`
    (kg CO2e per billed kg) are the orders'; `first`, `nxt`, `pick` the tariff's rates for the
    group, `divisor` its volumetric divisor, `stop_kg` a parcel's last-mile CO2.
    """
    # Plain Python numbers: groups are small, and numpy's per-call overhead would dominate.
    w, v = weight.tolist(), volume.tolist()
    lo_, hi_ = lo.tolist(), hi.tolist()
    divisor, stop = float(divisor), float(stop_kg)
    first, nxt, pick = float(first), float(nxt), float(pick)
    co2_per_kg = float(per_kg.max())
    known: dict[tuple[int, ...], tuple[float, float, float]] = {}

    def price(items: list[int]) -> tuple[float, float, float]:
        """Cost, CO2 and bracket slack (kg to the next started kg) of a bin of `items`."""
        key = tuple(sorted(items))
        if key not in known:
            billed = max(sum(w[i] for i in key), sum(v[i] for i in key) / divisor)
            extra = math.ceil(max(billed - 1.0, 0.0) - 1e-9)
            cost = round(first + nxt * extra + pick, 2)
            known[key] = (
                (cost, billed * co2_per_kg + stop, extra + 1 - billed) if key else (0, 0, 0)
            )
        return known[key]

    def fits(items: list[int]) -> bool:
        return (
            sum(w[i] for i in items) <= max_weight_kg
            and sum(v[i] for i in items) <= max_volume_cm3
            and max(lo_[i] for i in items) <= min(hi_[i] for i in items)
        )

    if weight.size <= _EXACT_UP_TO:
        candidates = _splits(weight.size, fits)
    else:
        sizes = (
            np.maximum(weight / max_weight_kg, volume / max_volume_cm3),
            weight,
            volume,
        )
        candidates = (
            _greedy(np.argsort(-size, kind="stable").tolist(), price, fits, lam)
            for size in sizes
            for lam in _PACK_WEIGHTS
        )
    best, chosen = None, [0] * weight.size
    for k, bins in enumerate(candidates):
        cost = sum(price(b)[0] for b in bins)
        co2 = sum(price(b)[1] for b in bins)
        key = (round(cost + co2_price * co2, 9), len(bins), k)
        if best is None or key < best:
            best = key
            for j, b in enumerate(bins):
                for i in b:
                    chosen[i] = j
    return np.array(chosen, dtype=np.int64)


def _splits(n: int, fits) -> Iterator[list[list[int]]]:
    """Every split of items 0..n-1 into bins that each pass `fits` (which a bin's subsets
    pass too, so a bin that fails is not grown further)."""
    bins: list[list[int]] = []

    def grow(i: int) -> Iterator[list[list[int]]]:
        if i == n:
            yield [list(b) for b in bins]
            return
        for b in bins:
            b.append(i)
            if fits(b):
                yield from grow(i + 1)
            b.pop()
        bins.append([i])
        yield from grow(i + 1)
        bins.pop()

    return grow(0)


def _greedy(order: list[int], price, fits, lam: float) -> list[list[int]]:
    """First-fit decreasing: each item (in `order`) goes to the bin it adds least to, at
    cost + lam * CO2 (ties: the bin left nearest the top of its kg bracket), then single items
    move between bins while a move lowers the total."""

    def objective(items: list[int]) -> float:
        cost, co2, _ = price(items)
        return cost + lam * co2

    bins: list[list[int]] = []
    for i in order:
        options = [
            (round(objective(b + [i]) - objective(b), 9), price(b + [i])[2], j)
            for j, b in enumerate(bins)
            if fits(b + [i])
        ]
        if options:
            bins[min(options)[2]].append(i)
        else:
            bins.append([i])
    for _ in range(20):
        moved = False
        for a in range(len(bins)):
            for i in list(bins[a]):
                rest = [x for x in bins[a] if x != i]
                for b in range(len(bins)):
                    target = bins[b] + [i]
                    if b == a or not bins[b] or not fits(target):
                        continue
                    gain = objective(bins[a]) + objective(bins[b])
                    if gain - objective(rest) - objective(target) > 1e-9:
                        bins[a], bins[b], moved = rest, target, True
                        break
        bins = [b for b in bins if b]
        if not moved:
            break
    return bins
