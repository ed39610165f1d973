"""Dispatch waves: which waves an order reaches and which keep its promise, how many parcels
each can take, and which wave each parcel takes.

A node's waves are slots: its waves of the plan's day, by cut-off, then the same waves again on
the next day (`day_offset` 1). An order reaches a slot when it is ready `lead` minutes before
the cut-off; it keeps its promise in a slot that cuts off by its `deadline_minute`. Each order
thus has `lo`, the first slot it reaches (the node's last when it reaches none), and `hi`, the
last slot keeping its promise (-1: none). A parcel may take a slot every order in it reaches and
that keeps every promise in it, so its orders must have `max(lo) <= min(hi)`; when they have
not, the tightest promises leave the parcel until the rest do. A merged parcel that reaches a
wave of the day leaves that day; one that reaches none leaves with the first it reaches.
Capacity is counted in parcels per slot, this plan's parcels only.

The shop's rule (`first_come`) places parcels of one order each, first come, first served, in
the earliest slot each reaches with room. The shop's own orders, and those whose parcel kept no
promise, are placed so before the merge's parcels (merging never delays them), those whose
parcel found no room after them, and the baseline (every order unmerged) on empty slots. The
merge's parcels (`choose_waves`) are placed by each node as a whole: as many as fit, then
opening the cheapest new batches (a slot already dispatching is free to join; a new one costs
its handling and a collection run), then shipping earliest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

WAVE_COLUMNS = ("node_id", "wave", "cutoff_minute", "capacity", "batch_cost")
DAY_MINUTES = 1440


@dataclass(frozen=True)
class Grid:
    """Each node's slots: its waves of the day (`width` columns, by cut-off), then the same of
    the next day; a node with fewer waves has empty slots (cut-off inf, capacity 0)."""

    width: int
    cutoff: np.ndarray  # (nodes, 2 * width), minutes after the plan's midnight
    capacity: np.ndarray
    batch_cost: np.ndarray
    wave: np.ndarray


def wave_grid(waves: pd.DataFrame, node_ids: pd.Index) -> Grid:
    """The slots of the nodes `node_ids` (row i: node i) from the raw table `dispatch_waves`;
    ValueError naming a node without waves."""
    w = waves.loc[waves["node_id"].isin(node_ids), list(WAVE_COLUMNS)]
    missing = node_ids.difference(pd.Index(w["node_id"].unique()))
    if len(missing):
        raise ValueError(f"node {missing[0]!r} has no dispatch waves")
    w = w.assign(_node=node_ids.get_indexer(w["node_id"]))
    w = w.sort_values(["_node", "cutoff_minute", "wave"], kind="stable")
    row = w["_node"].to_numpy()
    col = _rank(row)
    width = int(col.max()) + 1 if col.size else 0
    shape = (len(node_ids), 2 * width)
    cutoff, cost = np.full(shape, np.inf), np.zeros(shape)
    capacity, wave = np.zeros(shape, dtype=np.int64), np.full(shape, -1, dtype=np.int64)
    for later in (0, 1):  # the plan's day, then the next
        cutoff[row, col + later * width] = w["cutoff_minute"].to_numpy(float) + later * DAY_MINUTES
        capacity[row, col + later * width] = w["capacity"].to_numpy(np.int64)
        cost[row, col + later * width] = w["batch_cost"].to_numpy(float)
        wave[row, col + later * width] = w["wave"].to_numpy(np.int64)
    return Grid(width, cutoff, capacity, cost, wave)


def reach(
    grid: Grid, node: np.ndarray, ready: np.ndarray, deadline: np.ndarray, lead: int
) -> tuple[np.ndarray, np.ndarray]:
    """`lo`, `hi` of each order: the first slot of its node it reaches (the last slot when it
    reaches none) and the last that keeps its promise (-1: none; `deadline` inf: no promise)."""
    cut = grid.cutoff[node]
    valid = np.isfinite(cut)
    reaches = valid & (ready[:, None] <= cut - lead)
    keeps = valid & (cut <= deadline[:, None])
    lo, hi = np.zeros(node.size, dtype=np.int64), np.full(node.size, -1, dtype=np.int64)
    if node.size:  # argmax needs slots, which an empty day has none of
        last = cut.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
        lo = np.where(reaches.any(axis=1), reaches.argmax(axis=1), last)
        hi = np.where(keeps.any(axis=1), cut.shape[1] - 1 - keeps[:, ::-1].argmax(axis=1), -1)
    return lo.astype(np.int64), hi.astype(np.int64)


def release_missed(
    pid: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    ready: np.ndarray,
    deadline: np.ndarray,
    n_slots: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Take out of each parcel (`pid` of each order, -1: none) the orders with the tightest
    promises until the rest share a slot; the new `pid` and which orders left. Orders by
    loosening promise, a prefix shares a slot while the latest slot any of them first reaches
    is no later than the earliest last slot keeping their promises."""
    rows = np.flatnonzero(pid >= 0)
    rows = rows[np.lexsort((ready[rows], -deadline[rows], pid[rows]))]
    p = pid[rows]
    span = 4 * (n_slots + 2)  # offsets keep each parcel's running max apart
    first_reach = np.maximum.accumulate(p * span + lo[rows]) - p * span
    last_kept = np.minimum.accumulate(hi[rows] - p * span) + p * span
    missed = np.zeros(pid.size, dtype=bool)
    missed[rows[first_reach > last_kept]] = True
    return np.where(missed, -1, pid), missed


def first_come(
    grid: Grid,
    node: np.ndarray,
    lo: np.ndarray,
    ready: np.ndarray,
    order_id: np.ndarray,
    fill: np.ndarray,
) -> np.ndarray:
    """The shop's rule: the slot of each parcel of one order (its node, `lo`, `ready` and
    `order_id` given), first come, first served, each the earliest it reaches with room; `fill`
    (parcels per slot) is updated. A backlog past the next day's waves goes with its last one,
    over capacity (beyond the plan)."""
    slot = np.full(node.size, -1, dtype=np.int64)
    pending = np.lexsort((order_id, ready, node))
    for s in range(grid.cutoff.shape[1]):
        now = pending[lo[pending] <= s]
        if not now.size:
            continue
        at = node[now]  # still sorted by node: rank is the place in the node's queue
        take = _rank(at) < grid.capacity[at, s] - fill[at, s]
        slot[now[take]] = s
        fill[:, s] += np.bincount(at[take], minlength=fill.shape[0])
        pending = pending[slot[pending] < 0]
    if pending.size:
        last = (
            grid.cutoff.shape[1] - 1 - np.argmax(np.isfinite(grid.cutoff[node[pending], ::-1]), 1)
        )
        slot[pending] = last
        np.add.at(fill, (node[pending], last), 1)
    return slot


def choose_waves(
    grid: Grid,
    parcel: np.ndarray,
    node: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    fill: np.ndarray,
    batch_co2: float,
) -> np.ndarray:
    """Slot of each merge parcel (-1: no room), given the parcel (0, 1, ...), node, `lo` and
    `hi` of each of its orders; `fill` (parcels per slot) is updated. A new batch is priced at
    its batch cost plus `batch_co2` (its CO2 at the CO2 price).

    Parcels of one node with the same allowed slots are interchangeable, so each node's choice
    is made on the counts of such classes: every set of its idle slots is tried, and the one
    placing most parcels, then opening the cheapest new batches, then shipping earliest, kept.
    """
    n_orders = np.bincount(parcel)
    p_node = np.zeros(n_orders.size, dtype=np.int64)
    p_node[parcel] = node
    p_lo = np.zeros(n_orders.size, dtype=np.int64)
    np.maximum.at(p_lo, parcel, lo)
    p_hi = np.full(n_orders.size, np.iinfo(np.int64).max)
    np.minimum.at(p_hi, parcel, hi)
    # A parcel that reaches a wave today leaves today; one that does not, with its first wave.
    p_hi = np.where(p_lo < grid.width, np.minimum(p_hi, grid.width - 1), p_lo)
    slot = _place(grid, p_node, p_lo, p_hi, n_orders, fill, batch_co2)
    np.add.at(fill, (p_node[slot >= 0], slot[slot >= 0]), 1)
    return slot


def _place(
    grid: Grid,
    node: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n_orders: np.ndarray,
    fill: np.ndarray,
    batch_co2: float,
) -> np.ndarray:
    """Slot of each parcel (see `choose_waves`), the parcel allowed slots `lo`..`hi`."""
    n_slots = grid.cutoff.shape[1]
    if not node.size:
        return np.zeros(0, dtype=np.int64)
    cls, of = np.unique((node * n_slots + lo) * n_slots + hi, return_inverse=True)
    c_node, rest = np.divmod(cls, n_slots * n_slots)
    c_lo, c_hi = np.divmod(rest, n_slots)
    count = np.bincount(of, minlength=cls.size)
    placed = np.zeros((cls.size, n_slots), dtype=np.int64)
    room = np.maximum(grid.capacity - fill, 0)
    new_batch = grid.batch_cost + batch_co2
    start = np.flatnonzero(np.r_[True, c_node[1:] != c_node[:-1]])
    for a, b in zip(start, [*start[1:], cls.size], strict=True):
        k = c_node[a]
        placed[a:b] = _best_waves(
            c_lo[a:b], c_hi[a:b], count[a:b], room[k], fill[k] > 0, new_batch[k]
        )
    # Within a class the parcels of most orders go first: one left without room ships its
    # orders alone, which costs nothing more for a parcel of one.
    by_class = np.lexsort((-n_orders, of))
    rank = np.empty(of.size, dtype=np.int64)
    rank[by_class] = _rank(of[by_class])
    taken = np.cumsum(placed, axis=1)[of]
    return np.where(rank < taken[:, -1], (taken > rank[:, None]).argmax(axis=1), -1)


def _best_waves(
    lo: np.ndarray,
    hi: np.ndarray,
    count: np.ndarray,
    room: np.ndarray,
    busy: np.ndarray,
    price: np.ndarray,
) -> np.ndarray:
    """Parcels of each class placed in each slot at one node (see `choose_waves`)."""
    by_hi = np.argsort(hi, kind="stable")
    lo_, hi_, count_ = lo[by_hi].tolist(), hi[by_hi].tolist(), count[by_hi].tolist()
    span = [s for s in range(min(lo_), max(hi_) + 1) if room[s] > 0]
    idle = [s for s in span if not busy[s]]
    best_key, best = None, np.zeros((len(lo_), room.size), dtype=np.int64)
    for mask in range(1 << len(idle)):
        use = sorted(
            [s for s in span if busy[s]] + [s for j, s in enumerate(idle) if mask >> j & 1]
        )
        placed = _edf(lo_, hi_, count_, room, use)
        used = placed.sum(axis=0) > 0
        opened = round(float(price[[s for s in idle if used[s]]].sum()), 9)
        key = (-int(placed.sum()), opened, int(placed.sum(axis=0) @ np.arange(room.size)))
        if best_key is None or key < best_key:
            best_key, best = key, placed
    out = np.empty_like(best)
    out[by_hi] = best
    return out


def _edf(
    lo: list[int], hi: list[int], count: list[int], room: np.ndarray, use: list[int]
) -> np.ndarray:
    """Earliest deadline first over the slots `use`, classes sorted by `hi`: at each slot the
    classes that must leave soonest go first, which places as many parcels as any rule can."""
    left = list(count)
    placed = np.zeros((len(lo), room.size), dtype=np.int64)
    for s in use:
        free = int(room[s])
        for c in range(len(lo)):
            if free == 0:
                break
            if left[c] and lo[c] <= s <= hi[c]:
                t = min(free, left[c])
                placed[c, s], left[c], free = t, left[c] - t, free - t
    return placed


def _rank(key: np.ndarray) -> np.ndarray:
    """Each element's place within its run of equal keys (`key` sorted)."""
    at = np.arange(key.size)
    if not key.size:
        return at
    start = np.r_[True, key[1:] != key[:-1]]
    return at - np.maximum.accumulate(np.where(start, at, 0))
