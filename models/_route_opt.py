"""The routing optimiser: for a batch of orders, each with a few candidate plans (which node or
nodes ship it, in which dispatch wave or waves), choose at most one plan per order so that the total
cost is least, within the stock per (node, SKU) and the parcels each dispatch slot (node, wave)
can take.

It knows nothing of how candidates and their costs were made; it sees a cost per candidate and,
per candidate, the units of each stock key and the parcels of each slot it takes. Stock keys and
slots are handled alike below, as "resources".

Two solvers:

- `solve_greedy`: first come first served. Orders in arrival order each take their cheapest
  candidate that still fits; an order nothing fits is left unassigned.
- `solve_mip`: a 0-1 programme (one binary per candidate, an "unassigned" variable per order at
  `unserved_cost`) solved by HiGHS through `scipy.optimize.milp`. Most of a batch never reaches
  the solver. A candidate that alone exceeds some stock or capacity is dropped. A resource is
  contested only if the orders could together exceed it, each order counted at its most
  demanding candidate (an order takes at most one); other resources cannot bind and their
  constraints are dropped. An order whose cheapest candidate touches no contested resource takes
  it; a candidate dearer than one of its order's uncontested candidates (or than leaving the
  order unassigned) is dropped. These steps repeat until nothing changes, and only the orders
  left, with their candidates left, go to the solver. The solver's answer is checked (one plan
  per order, no stock or capacity exceeded) and compared with greedy's, counting `unserved_cost`
  for each unassigned order; if it has no answer in time, an infeasible one or a worse one,
  greedy's is returned and `method` says why.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.optimize import Bounds, LinearConstraint, OptimizeResult, milp

# Relative slack on every "use <= available" test, so that fractional units added up in another
# order do not flip it. Greedy, the decomposition and `violations` share it and so agree.
_TOL = 1e-9


@dataclass(frozen=True)
class Problem:
    """One batch. Arrays are converted on construction (sparse ones copied, duplicates summed).
    A stock or capacity below zero (a slot already overbooked) counts as zero, and an infinite one
    as unlimited; a NaN, a negative use or a candidate of no order is an error.

    - `cand_order` (k,): the order each candidate belongs to; an order's candidates need not be
      contiguous, and an order may have none.
    - `cand_cost` (k,): the cost of choosing the candidate (finite).
    - `stock_use` (k, n_stock), `stock` (n_stock,): units of each stock key taken, and available.
    - `slot_use` (k, n_slots), `capacity` (n_slots,): parcels put in each dispatch slot, and the
      parcels it can still take.
    - `arrival` (n_orders,): greedy serves orders in this order (ties by order index).
    - `unserved_cost`: the cost of leaving an order unassigned, in the MIP's objective.
    """

    n_orders: int
    cand_order: np.ndarray
    cand_cost: np.ndarray
    stock_use: sp.csr_array
    stock: np.ndarray
    slot_use: sp.csr_array
    capacity: np.ndarray
    arrival: np.ndarray
    unserved_cost: float

    def __post_init__(self) -> None:
        n = int(self.n_orders)
        if n < 0:
            raise ValueError("n_orders must be >= 0")
        order = _vector(self.cand_order, "cand_order").astype(np.int64)
        k = order.size
        if k and (order.min() < 0 or order.max() >= n):
            raise ValueError("cand_order must be in 0..n_orders-1")
        cost = _vector(self.cand_cost, "cand_cost").astype(np.float64)
        if cost.size != k or not np.isfinite(cost).all():
            raise ValueError("cand_cost must hold one finite cost per candidate")
        stock = _available(self.stock, "stock")
        capacity = _available(self.capacity, "capacity")
        stock_use = _use(self.stock_use, (k, stock.size), "stock_use")
        slot_use = _use(self.slot_use, (k, capacity.size), "slot_use")
        arrival = _vector(self.arrival, "arrival")
        if arrival.size != n:
            raise ValueError("arrival must hold one value per order")
        unserved = float(self.unserved_cost)
        if not math.isfinite(unserved):
            raise ValueError("unserved_cost must be finite")
        for name, value in (
            ("n_orders", n),
            ("cand_order", order),
            ("cand_cost", cost),
            ("stock_use", stock_use),
            ("stock", stock),
            ("slot_use", slot_use),
            ("capacity", capacity),
            ("arrival", arrival),
            ("unserved_cost", unserved),
        ):
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class Solution:
    """`chosen[o]` is the candidate order `o` takes, -1 if unassigned. `objective` sums the
    chosen candidates' costs (unassigned orders add nothing to it). `gap` is the relative gap the
    solver proved, counting `unserved_cost` per unassigned order: (that objective - best bound) /
    max(|that objective|, 1e-9); None when there is no bound (plain greedy)."""

    chosen: np.ndarray
    objective: float
    unassigned: int
    method: str
    gap: float | None
    seconds: float
    status: str


def violations(problem: Problem, chosen: np.ndarray) -> tuple[int, int]:
    """(stock violations, capacity violations): how many stock keys the chosen candidates use
    beyond the stock, and how many slots beyond their capacity."""
    chosen = np.asarray(chosen, dtype=np.int64)
    k = problem.cand_order.size
    if chosen.shape != (problem.n_orders,) or (
        chosen.size and (chosen.min() < -1 or chosen.max() >= k)
    ):
        raise ValueError("chosen must hold one candidate index or -1 per order")
    counts = np.bincount(chosen[chosen >= 0], minlength=k).astype(np.float64)
    stock_used = problem.stock_use.T @ counts
    slots_used = problem.slot_use.T @ counts
    return (
        int(np.count_nonzero(stock_used > _limit(problem.stock))),
        int(np.count_nonzero(slots_used > _limit(problem.capacity))),
    )


def solve_greedy(problem: Problem) -> Solution:
    """Orders in `arrival` order (ties by order index); each takes its cheapest candidate (ties by
    candidate index) that still fits the remaining stock and capacity; if none fits, it stays
    unassigned. `unserved_cost` plays no part."""
    start = time.perf_counter()
    chosen = _greedy(problem, _prepare(problem))
    return _solution(problem, chosen, "greedy", "greedy", None, start)


def solve_mip(
    problem: Problem,
    *,
    time_limit: float = 10.0,
    mip_rel_gap: float = 1e-4,
    max_mip_candidates: int = 50_000,
) -> Solution:
    """Minimises the chosen candidates' cost plus `unserved_cost` per unassigned order (see the
    module's docstring for the decomposition). `time_limit` (seconds) bounds the whole call: the
    solver gets what preparing and greedy left of it. Never returns worse than `solve_greedy`
    on that objective: when the solver's answer is missing, infeasible or worse, greedy's is
    returned with method "greedy (mip fallback: <reason>)"."""
    start = time.perf_counter()
    prep = _prepare(problem)
    greedy = _solution(problem, _greedy(problem, prep), "greedy", "greedy", None, start)
    greedy_total = _penalised(problem, greedy)

    cand_order, cost = problem.cand_order, problem.cand_cost
    n = problem.n_orders
    # Per order, the best choice that needs no contested resource: an uncontested candidate or,
    # at first, leaving the order unassigned. Every candidate still `live` touches a contested
    # resource and costs no more than that.
    outside = np.full(n, -1, dtype=np.int64)
    outside_cost = np.full(n, problem.unserved_cost)
    live = prep.valid & (cost <= problem.unserved_cost)
    pairs = prep.pairs
    while True:
        pairs = pairs.restrict(live)
        contested = pairs.contested(live)
        touches = _touches(prep, contested, live)
        best = _cheapest_per_order(prep, cost, live & ~touches)
        if best.size:
            orders, costs = cand_order[best], cost[best]
            better = (costs < outside_cost[orders]) | (
                (costs == outside_cost[orders]) & (outside[orders] < 0)
            )
            outside[orders[better]] = best[better]
            outside_cost[orders[better]] = costs[better]
        still = touches & (cost <= outside_cost[cand_order])
        # Contested resources are counted over live candidates only: they shrink with `live`,
        # which may free more orders, so repeat until `live` is stable.
        if np.array_equal(still, live):
            break
        live = still

    xs = np.flatnonzero(live)
    if xs.size == 0:
        return _solution(problem, outside, "mip", "optimal", 0.0, start)

    mip_orders = np.unique(cand_order[xs])
    fixed_total = math.fsum(np.delete(outside_cost, mip_orders).tolist())
    if xs.size > max_mip_candidates:
        return _lp_rounded(
            problem,
            prep,
            xs,
            mip_orders,
            outside,
            outside_cost,
            contested,
            fixed_total,
            greedy,
            greedy_total,
            time_limit=max(time_limit - (time.perf_counter() - start), 1e-3),
            start=start,
        )
    res = _solve(
        prep,
        xs,
        np.searchsorted(mip_orders, cand_order[xs]),
        cost[xs],
        outside_cost[mip_orders],
        np.flatnonzero(contested),
        time_limit=max(time_limit - (time.perf_counter() - start), 1e-3),
        mip_rel_gap=mip_rel_gap,
    )
    status = _status_text(res.status, res.message)
    bound = None
    if res.mip_dual_bound is not None and math.isfinite(res.mip_dual_bound):
        bound = fixed_total + float(res.mip_dual_bound)

    reason = None
    if res.x is None:
        reason = f"{status}, no solution"
    else:
        picked = np.asarray(res.x[: xs.size]) > 0.5
        chosen = outside.copy()
        per_order = np.bincount(
            np.searchsorted(mip_orders, cand_order[xs[picked]]), minlength=mip_orders.size
        )
        chosen[cand_order[xs[picked]]] = xs[picked]
        if per_order.max() > 1 or violations(problem, chosen) != (0, 0):
            reason = "infeasible solution"
        else:
            mip = _solution(problem, chosen, "mip", status, None, start)
            total = _penalised(problem, mip)
            if total > greedy_total:
                reason = "worse than greedy"
            else:
                return replace(mip, gap=None if bound is None else _gap(total, bound))
    gap = None if bound is None else _gap(greedy_total, bound)
    return _solution(problem, greedy.chosen, f"greedy (mip fallback: {reason})", status, gap, start)


@dataclass(frozen=True)
class _Prepared:
    use: sp.csr_array  # (k, n_stock + n_slots): stock keys then slots
    available: np.ndarray  # (n_stock + n_slots,)
    limit: np.ndarray  # `available` with the _TOL slack
    nz_row: np.ndarray  # the candidate of each stored entry of `use`
    valid: np.ndarray  # bool (k,): the candidate fits on its own
    pairs: _Pairs  # the entries of valid candidates on resources they could exceed
    by_order: np.ndarray  # candidates by order, then index
    order_starts: np.ndarray  # where each order with candidates starts in `by_order`


@dataclass(frozen=True)
class _Pairs:
    """Stored entries of `use` sorted by (order, resource), for `contested`."""

    rows: np.ndarray  # candidate
    vals: np.ndarray  # its use
    keys: np.ndarray  # order * n_resources + resource
    limit: np.ndarray

    def contested(self, live: np.ndarray) -> np.ndarray:
        """Resources the live candidates could exceed, each order counted at its most
        demanding live candidate on that resource (it takes at most one)."""
        n_res = self.limit.size
        keep = live[self.rows]
        vals, keys = self.vals[keep], self.keys[keep]
        if keys.size == 0:
            return np.zeros(n_res, dtype=bool)
        starts = np.flatnonzero(_firsts(keys))
        worst = np.maximum.reduceat(vals, starts)
        return np.bincount(keys[starts] % n_res, weights=worst, minlength=n_res) > self.limit

    def restrict(self, live: np.ndarray) -> _Pairs:
        keep = live[self.rows]
        return _Pairs(self.rows[keep], self.vals[keep], self.keys[keep], self.limit)


def _prepare(problem: Problem) -> _Prepared:
    use = sp.hstack([problem.stock_use, problem.slot_use], format="csr")
    use = sp.csr_array(use, dtype=np.float64)
    available = np.concatenate([problem.stock, problem.capacity])
    limit = _limit(available)
    k, n_res = problem.cand_order.size, available.size
    nz_row = np.repeat(np.arange(k, dtype=np.int64), np.diff(use.indptr))
    cols = use.indices.astype(np.int64)
    valid = np.ones(k, dtype=bool)
    valid[nz_row[use.data > limit[cols]]] = False

    # A resource even all valid candidates together cannot exceed is never contested: only the
    # other resources' entries are sorted, once, so each `contested` is a linear pass.
    counted = valid[nz_row]
    total = np.bincount(cols[counted], weights=use.data[counted], minlength=n_res)
    entries = np.flatnonzero(counted & (total > limit)[cols])
    keys = problem.cand_order[nz_row[entries]] * n_res + cols[entries]
    by_key = _argsort(keys, problem.n_orders * n_res)
    entries, keys = entries[by_key], keys[by_key]
    pairs = _Pairs(nz_row[entries], use.data[entries], keys, limit)

    by_order = _argsort(problem.cand_order, problem.n_orders)
    orders = problem.cand_order[by_order]
    order_starts = np.flatnonzero(_firsts(orders))
    return _Prepared(use, available, limit, nz_row, valid, pairs, by_order, order_starts)


def _argsort(keys: np.ndarray, bound: int) -> np.ndarray:
    """A stable argsort of int64 `keys` in [0, bound). With the position packed into the key,
    `np.sort` does it: its SIMD sort is several times faster than `argsort` on large arrays."""
    n = keys.size
    if n and bound * n < 2**62:
        return np.sort(keys * n + np.arange(n)) % n
    return np.argsort(keys, kind="stable")


def _firsts(sorted_values: np.ndarray) -> np.ndarray:
    """True where a run of equal values starts."""
    out = np.ones(sorted_values.size, dtype=bool)
    out[1:] = sorted_values[1:] != sorted_values[:-1]
    return out


def _touches(prep: _Prepared, contested: np.ndarray, live: np.ndarray) -> np.ndarray:
    hits = contested[prep.use.indices] & live[prep.nz_row]
    out = np.zeros(live.size, dtype=bool)
    out[prep.nz_row[hits]] = True
    return out


def _cheapest_per_order(prep: _Prepared, cost: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Of the candidates in `mask`, each order's cheapest (ties by candidate index)."""
    if prep.by_order.size == 0:
        return prep.by_order
    in_mask = mask[prep.by_order]
    masked = np.where(in_mask, cost[prep.by_order], np.inf)
    least = np.minimum.reduceat(masked, prep.order_starts)
    sizes = np.diff(np.append(prep.order_starts, masked.size))
    at_least = np.flatnonzero(in_mask & (masked == np.repeat(least, sizes)))
    group = np.repeat(np.arange(sizes.size), sizes)[at_least]
    return prep.by_order[at_least[_firsts(group)]]


def _greedy(problem: Problem, prep: _Prepared) -> np.ndarray:
    n, cand_order, cost = problem.n_orders, problem.cand_order, problem.cand_cost
    chosen = np.full(n, -1, dtype=np.int64)
    first = _cheapest_per_order(prep, cost, prep.valid)
    # An uncontested resource cannot run out whatever is chosen, so an order whose cheapest
    # candidate needs no contested one takes it whenever it comes. Only the other orders need
    # the pass in arrival order, and it checks contested resources only.
    contested = prep.pairs.contested(prep.valid)
    easy = ~_touches(prep, contested, prep.valid)[first]
    chosen[cand_order[first[easy]]] = first[easy]
    hard = np.zeros(n, dtype=bool)
    hard[cand_order[first[~easy]]] = True
    cands = np.flatnonzero(prep.valid & hard[cand_order])
    if cands.size == 0:
        return chosen

    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), problem.arrival))] = np.arange(n)
    cands = cands[np.lexsort((cands, cost[cands], rank[cand_order[cands]]))]
    _first_fit(prep, cands, cand_order, contested, chosen)
    return chosen


def _first_fit(
    prep: _Prepared,
    ranked: np.ndarray,
    cand_order: np.ndarray,
    contested: np.ndarray,
    chosen: np.ndarray,
) -> None:
    """Candidates in `ranked` order: each order takes its first one that still fits the
    contested resources (into `chosen`); an order none fits keeps what `chosen` held.

    The pass runs over blocks of `ranked`. Uses only grow, so a candidate that does not fit
    now never will: those are dropped first. The orders not yet served would each try their
    first candidate left in the block; when all those together fit, the pass one by one would
    take every one of them (each check passes if the total does, and the uses are added in
    the same order), so they are taken at once. Otherwise the block shrinks, and a small
    block that still does not fit goes one candidate at a time."""
    indptr, indices, data = _on_columns(prep, contested)
    limit = prep.limit[contested]
    used = np.zeros(limit.size)
    order_of = cand_order[ranked]
    served = np.zeros(chosen.size, dtype=bool)
    pos, step, n = 0, _BLOCK, ranked.size
    while pos < n:
        end = min(pos + step, n)
        if end - pos > _SMALL_BLOCK:
            rows = pos + np.flatnonzero(~served[order_of[pos:end]])
            # A candidate that does not fit now never will: uses only grow.
            at, counts = _entries(indptr, ranked[rows])
            res = indices[at]
            over = used[res] + data[at] > limit[res]
            if over.any():
                hit = np.repeat(np.arange(rows.size), counts)[over]
                rows = rows[np.bincount(hit, minlength=rows.size) == 0]
            _, first = np.unique(order_of[rows], return_index=True)
            tries = rows[np.sort(first)]
            at, _ = _entries(indptr, ranked[tries])
            touched, loc = np.unique(indices[at], return_inverse=True)
            trial = used[touched]
            np.add.at(trial, loc, data[at])
            if (trial <= limit[touched]).all():
                used[touched] = trial
                chosen[order_of[tries]] = ranked[tries]
                served[order_of[tries]] = True
                pos, step = end, step * 2
            else:
                step = max(step // 8, _SMALL_BLOCK)
            continue
        at, counts = _entries(indptr, ranked[pos:end])
        ind, dat = indices[at].tolist(), data[at].tolist()
        ptr = np.r_[0, np.cumsum(counts)].tolist()
        for k, (c, o) in enumerate(
            zip(ranked[pos:end].tolist(), order_of[pos:end].tolist(), strict=True)
        ):
            if served[o]:
                continue
            lo, hi = ptr[k], ptr[k + 1]
            if all(used[ind[p]] + dat[p] <= limit[ind[p]] for p in range(lo, hi)):
                for p in range(lo, hi):
                    used[ind[p]] += dat[p]
                chosen[o] = c
                served[o] = True
        pos, step = end, 2 * _SMALL_BLOCK


# `_first_fit`'s blocks: the size it starts from, and the size at or below which it goes one
# candidate at a time.
_BLOCK = 4096
_SMALL_BLOCK = 64


def _on_columns(prep: _Prepared, columns: np.ndarray):
    """CSR arrays (indptr, indices, data) of `use` on the resources where `columns` is true,
    numbered among those: `use[:, np.flatnonzero(columns)]`, entries of a candidate in their
    stored order."""
    use = prep.use
    keep = columns[use.indices]
    indptr = np.zeros(use.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(prep.nz_row[keep], minlength=use.shape[0]), out=indptr[1:])
    number = np.cumsum(columns) - 1
    return indptr, number[use.indices[keep]], use.data[keep]


def _entries(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the entries of `rows` are stored, row after row, and how many each row has."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    return _ragged(starts, counts), counts


def _ragged(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenated ranges starts[i] .. starts[i] + counts[i] - 1."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total) - np.repeat(ends - counts - starts, counts)


def _solve(
    prep: _Prepared,
    xs: np.ndarray,
    x_order: np.ndarray,
    x_cost: np.ndarray,
    outside_cost: np.ndarray,
    resources: np.ndarray,
    *,
    time_limit: float,
    mip_rel_gap: float,
    integral: bool = True,
) -> OptimizeResult:
    """min x_cost.x + outside_cost.u with, per order, sum x + u = 1 and, per contested
    resource, use.x <= available. u stands for the order's best choice outside the solver (an
    uncontested candidate, or unassigned); it need not be integer, as x is. With `integral`
    false, the linear relaxation: its optimum bounds the program's from below."""
    nx, m = xs.size, outside_cost.size
    block = sp.coo_array(prep.use[xs][:, resources])
    rows = np.concatenate([x_order, np.arange(m), m + block.col.astype(np.int64)])
    cols = np.concatenate([np.arange(nx), nx + np.arange(m), block.row.astype(np.int64)])
    vals = np.concatenate([np.ones(nx + m), block.data])
    a = sp.csr_array((vals, (rows, cols)), shape=(m + resources.size, nx + m))
    lower = np.concatenate([np.ones(m), np.full(resources.size, -np.inf)])
    upper = np.concatenate([np.ones(m), prep.available[resources]])
    return milp(
        np.concatenate([x_cost, outside_cost]),
        integrality=np.concatenate([np.full(nx, 1 if integral else 0), np.zeros(m)]),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(a, lower, upper),
        options={"disp": False, "time_limit": time_limit, "mip_rel_gap": mip_rel_gap},
    )


def _lp_rounded(
    problem: Problem,
    prep: _Prepared,
    xs: np.ndarray,
    mip_orders: np.ndarray,
    outside: np.ndarray,
    outside_cost: np.ndarray,
    contested: np.ndarray,
    fixed_total: float,
    greedy: Solution,
    greedy_total: float,
    *,
    time_limit: float,
    start: float,
) -> Solution:
    """Too many contested candidates for branch and bound in the time: the linear relaxation
    is solved instead, and rounded by a first-fit pass that takes candidates in order of their
    relaxed value (then cost); an order left out takes its best uncontested choice. The
    relaxation's optimum bounds the gap. Greedy's plan is returned when it is no worse."""
    cand_order, cost = problem.cand_order, problem.cand_cost
    res = _solve(
        prep,
        xs,
        np.searchsorted(mip_orders, cand_order[xs]),
        cost[xs],
        outside_cost[mip_orders],
        np.flatnonzero(contested),
        time_limit=time_limit,
        mip_rel_gap=0.0,
        integral=False,
    )
    status = _status_text(res.status, res.message)
    if res.x is None:
        return replace(
            greedy,
            method=f"greedy (lp fallback: {status}, no solution)",
            seconds=time.perf_counter() - start,
        )
    bound = fixed_total + float(res.fun)
    x = np.asarray(res.x[: xs.size])
    # A candidate dearer than the order's uncontested choice is never worth its room.
    keep = cost[xs] <= outside_cost[cand_order[xs]]
    worth, relaxed = xs[keep], np.round(x, 9)[keep]
    ranked = worth[np.lexsort((worth, cost[worth], -relaxed))]
    chosen = outside.copy()
    _first_fit(prep, ranked, cand_order, contested, chosen)
    rounded = _solution(problem, chosen, "lp rounding", status, None, start)
    total = _penalised(problem, rounded)
    if violations(problem, chosen) != (0, 0) or total > greedy_total:
        return replace(
            greedy, method="greedy (lp rounding no better)", gap=_gap(greedy_total, bound)
        )
    return replace(rounded, gap=_gap(total, bound))


def _status_text(status: int, message: str) -> str:
    if status == 1:
        return "time limit" if "time limit" in message.lower() else "iteration limit"
    return {0: "optimal", 2: "infeasible", 3: "unbounded"}.get(status, f"solver: {message}")


def _solution(
    problem: Problem,
    chosen: np.ndarray,
    method: str,
    status: str,
    gap: float | None,
    start: float,
) -> Solution:
    taken = chosen[chosen >= 0]
    return Solution(
        chosen=chosen,
        # fsum adds exactly, so the comparison with greedy does not hang on the order of adding.
        objective=math.fsum(problem.cand_cost[taken].tolist()),
        unassigned=int(chosen.size - taken.size),
        method=method,
        gap=gap,
        seconds=time.perf_counter() - start,
        status=status,
    )


def _penalised(problem: Problem, solution: Solution) -> float:
    return solution.objective + problem.unserved_cost * solution.unassigned


def _gap(total: float, bound: float) -> float:
    # HiGHS's bound may sit a tolerance above the value it proved optimal.
    return max((total - bound) / max(abs(total), 1e-9), 0.0)


def _limit(available: np.ndarray) -> np.ndarray:
    return available + _TOL * np.maximum(1.0, np.abs(available))


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    out = np.asarray(values)
    if out.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return out


def _available(values: ArrayLike, name: str) -> np.ndarray:
    out = _vector(values, name).astype(np.float64)
    if np.isnan(out).any():
        raise ValueError(f"{name} must not be NaN")
    return np.maximum(out, 0.0)


def _use(
    matrix: ArrayLike | sp.sparray | sp.spmatrix, shape: tuple[int, int], name: str
) -> sp.csr_array:
    out = sp.csr_array(matrix, dtype=np.float64, copy=True)
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, not {out.shape}")
    out.sum_duplicates()
    out.eliminate_zeros()
    if not (np.isfinite(out.data) & (out.data >= 0)).all():
        raise ValueError(f"{name} must be finite and >= 0")
    return out
