"""The prefix path: a family's window aggregates at every snapshot, at the cost of events plus
rows rather than events times snapshots.

Each `Agg` of a family is split into per-event parts (what is counted, summed or told apart,
and whether the event matches), which the engine evaluates once per event, with no snapshot in
sight. Here the events are sorted by shopper and time, and running totals are kept per shopper;
a (shopper, snapshot) row then finds, by binary search, where its snapshot and the start of
each window fall in the shopper's events, and reads each aggregate as a difference of two
running totals. Sums run over the same 64-bit fixed-point values the join path adds (the engine
rounds them), and integer running totals are exact, so the two paths give the same numbers.
What cannot be read from running totals (distinct values that do not grow with time) is
counted over each row's window, which is still one pass over the events in the windows.

`tests/features/test_prefix.py` holds this path to the join definition, feature by feature, on
a world with many snapshots.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cadence.features._catalogue import DAY, Agg, Family, fixed, with_seconds

US = 1_000_000
GAP_STATS = (
    "gap_count",
    "gap_mean",
    "gap_median",
    "gap_std",
    "gap_min",
    "gap_max",
    "gap_last",
    "gap_cv",
    "dueness",
    "dueness_median",
    "dueness_z",
)
_INT_KINDS = ("count", "int_sum", "distinct")


def fast_specs(fam: Family):
    """The family's aggregates the prefix path computes, and the rest (joins to snapshots)."""
    fast = [s for s in fam.aggregates if isinstance(s.fn, Agg)]
    rest = [s for s in fam.aggregates if not isinstance(s.fn, Agg)]
    return fast, rest


def _leaves(agg: Agg) -> list[Agg]:
    return [leaf for p in agg.parts for leaf in _leaves(p)] if agg.kind == "ratio" else [agg]


@dataclass(frozen=True)
class EventPlan:
    """The per-event projection of a family's aggregates: which column holds each part."""

    table: ir.Table  # entity, ts, one column per distinct part
    value: dict[int, str]  # id(leaf) -> column of its value
    where: dict[int, str]  # id(leaf) -> column of its condition
    square: dict[int, str]  # id(leaf) -> column of its value squared (a std's)
    seen: dict[int, str]  # id(leaf) -> column of the time it must be seen before the snapshot


def event_plan(prepare, entity: str, src: dict[str, ir.Table], specs) -> EventPlan:
    """The events `prepare` makes from the raw tables, with a column per part of `specs`."""
    e = with_seconds(prepare(src))
    columns: dict[str, ir.Value] = {}
    names: dict[object, str] = {}

    def column(expr: ir.Value) -> str:
        op = expr.op()  # structurally equal formulas share one column
        if op not in names:
            names[op] = f"p{len(names)}"
            columns[names[op]] = expr
        return names[op]

    value, where, square, seen = {}, {}, {}, {}
    for spec in specs:
        for leaf in _leaves(spec.fn):
            if leaf.value is not None:
                v = leaf.value(e)
                if leaf.kind == "std":
                    v = v.cast("float64")
                    square[id(leaf)] = column(fixed(v * v))
                if leaf.kind in ("sum", "mean", "std"):
                    v = fixed(v)
                elif leaf.kind == "int_sum":
                    v = v.cast("int64")
                value[id(leaf)] = column(v)
            if leaf.where is not None:
                where[id(leaf)] = column(leaf.where(e).fill_null(False))
            if leaf.seen is not None:
                seen[id(leaf)] = column(leaf.seen(e))
    table = e.select(entity, "ts", **columns)
    return EventPlan(table, value, where, square, seen)


def _running(x: np.ndarray) -> np.ndarray:
    """Running totals with a leading 0 (64-bit; a difference of two is exact even past
    overflow, as long as the window's own total fits)."""
    out = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, dtype=np.int64, out=out[1:])
    return out


def _numbers(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values with nulls as 0, and the null mask (None when there are none)."""
    nulls = col.null_count
    values = pc.fill_null(col, 0).to_numpy() if nulls else col.to_numpy()
    mask = col.is_null().to_numpy(zero_copy_only=False) if nulls else None
    return values, mask


class _Sorted:
    """A family's events sorted by shopper and time, with each row's positions in them."""

    def __init__(self, events: pa.Table, entity: str, row_ids: pa.ChunkedArray, snap_us):
        row_code, ev_code = _codes(row_ids, events.column(entity))
        ts_us = events.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        ts_us = ts_us.to_numpy()
        ts_s = np.floor_divide(ts_us, US)
        snaps, at = np.unique(snap_us, return_inverse=True)  # the rows' few snapshots
        # Events are found by a key of (shopper, time). When every snapshot is a whole second,
        # "before the snapshot" and every window bound are questions about whole seconds, so
        # the time is the second, offset from the first; otherwise it is the event time's rank.
        whole = len(ts_s) > 0 and bool(np.all(snaps % US == 0))
        if whole:
            t0 = int(ts_s.min())
            span = int(ts_s.max()) - t0 + 1
            whole = (int(row_code.max(initial=0)) + 2) * (span + 1) < 2**62
        if whole:
            stride = span + 1
            key = ev_code * stride + (ts_s - t0)

            def rank(bound_us: np.ndarray) -> np.ndarray:
                return np.clip(bound_us // US - t0, 0, span)
        else:
            times, inverse = np.unique(ts_us, return_inverse=True)
            stride = len(times) + 1
            key = ev_code * stride + inverse

            def rank(bound_us: np.ndarray) -> np.ndarray:
                return np.searchsorted(times, bound_us, "left")

        self.order = np.argsort(key)  # ties are events of one shopper in one second
        key = key[self.order]
        code = ev_code[self.order]
        self.first = np.ones(len(key), dtype=bool)  # each shopper's first event
        self.first[1:] = code[1:] != code[:-1]
        self.ts_s = ts_s[self.order]
        self.n_events = len(key)
        base = row_code * stride

        def position(bound_us: np.ndarray) -> np.ndarray:
            """Each row's position of its first event at or after its bound (a function of
            its snapshot, given per distinct snapshot)."""
            return np.searchsorted(key, base + rank(bound_us)[at], "left")

        self.snaps_s = np.floor_divide(snaps, US)
        self.snap_us = snap_us
        self.snap_s = np.floor_divide(snap_us, US)
        self.start = np.searchsorted(key, base, "left")
        self.hi = position(snaps)
        self.has = self.hi > self.start  # an event before the snapshot: the join has the row
        self._position = position
        self._lo: dict[int | None, np.ndarray] = {None: self.start}
        self._runs: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def running(self, key: tuple, make) -> np.ndarray:
        """Running totals of `make()`, kept for the next aggregates over the same values (the
        same count or sum over other windows); a few at a time, to bound memory."""
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        run = self._runs[key] = _running(make())
        if len(self._runs) > 4:
            self._runs.popitem(last=False)
        return run

    def lo(self, window: int | None) -> np.ndarray:
        if window not in self._lo:
            self._lo[window] = self._position((self.snaps_s - window * 86400) * US)
        return self._lo[window]

    def take(self, col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
        """A column in the sorted order, as NumPy: numbers (nulls as 0, and their mask),
        times in microseconds (nulls as NULL_TIME), anything else as integer codes of its
        distinct values (nulls as -1)."""
        col = col.combine_chunks()
        if pa.types.is_timestamp(col.type):
            return _micros(col)[self.order], None
        if pa.types.is_boolean(col.type):
            return pc.fill_null(col, False).to_numpy(zero_copy_only=False)[self.order], None
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            codes = pc.fill_null(pc.dictionary_encode(col).indices, -1)
            codes = codes.to_numpy().astype(np.int64)[self.order]
            return codes, (codes < 0) if col.null_count else None
        values, nulls = _numbers(col)
        return values[self.order], None if nulls is None else nulls[self.order]


class _Leaf:
    """One aggregate's values per row: numbers and a validity mask."""

    def __init__(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.values, self.valid = values, valid


Columns = dict[str, tuple[np.ndarray, np.ndarray | None]]


def _evaluate(leaf: Agg, s: _Sorted, cols: Columns, plan: EventPlan) -> _Leaf:
    lo, hi = s.lo(leaf.window), s.hi
    flag = None
    if id(leaf) in plan.where:
        flag = cols[plan.where[id(leaf)]][0]

    if leaf.kind == "count" and id(leaf) in plan.seen:
        # Whether an event counts depends on the snapshot: each row looks at its window's
        # events (a window, so at most the events of that many days per row).
        seen = cols[plan.seen[id(leaf)]][0]
        row, pos = _expand(lo, hi)
        ok = (seen[pos] < s.snap_us[row]) & (seen[pos] != NULL_TIME)
        if flag is not None:
            ok &= flag[pos]
        return _Leaf(np.bincount(row, weights=ok, minlength=len(hi)).astype(np.int64), s.has)

    wcol = plan.where.get(id(leaf))
    if leaf.kind == "count":
        if flag is None:
            return _Leaf(hi - lo, s.has)
        run = s.running(("flag", wcol), lambda: flag)
        return _Leaf(run[hi] - run[lo], s.has)

    if leaf.kind in ("sum", "int_sum", "mean"):
        vcol = plan.value[id(leaf)]
        values, nulls = cols[vcol]

        def counted() -> np.ndarray:
            ok = np.ones(s.n_events, dtype=bool) if flag is None else flag.copy()
            return ok if nulls is None else ok & ~nulls

        total = s.running(("total", vcol, wcol), lambda: np.where(counted(), values, 0))
        window_total = total[hi] - total[lo]
        if leaf.kind == "mean":
            n = s.running(("n", vcol, wcol), counted)
            n = n[hi] - n[lo]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (window_total.astype(np.float64) / 1e9) / n.astype(np.float64)
            return _Leaf(mean, s.has & (n > 0))
        # A sum is null only when every event before the snapshot adds a null: each of them
        # is in the window, matches, and has no value.
        valid = s.has
        if nulls is not None:
            # the window's events whose value is null
            dropped = s.running(
                ("dropped", vcol, wcol), lambda: nulls if flag is None else flag & nulls
            )
            valid = valid & ((hi - s.start) > (dropped[hi] - dropped[lo]))
        if leaf.kind == "sum":
            return _Leaf(window_total.astype(np.float64) / 1e9, valid)
        return _Leaf(window_total, valid)

    if leaf.kind == "std":
        values, nulls = cols[plan.value[id(leaf)]]
        squares, _ = cols[plan.square[id(leaf)]]
        counted = np.ones(s.n_events, dtype=bool) if nulls is None else ~nulls
        run_n, run_1, run_2 = (
            _running(counted),
            _running(np.where(counted, values, 0)),
            _running(np.where(counted, squares, 0)),
        )
        n = (run_n[hi] - run_n[lo]).astype(np.float64)
        m1 = (run_1[hi] - run_1[lo]).astype(np.float64) / 1e9
        m2 = (run_2[hi] - run_2[lo]).astype(np.float64) / 1e9
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (m2 - m1 * m1 / n) / (n - 1)
        var = np.where(var < 0, 0.0, var)
        return _Leaf(np.sqrt(var), s.has & (n >= 2))

    if leaf.kind in ("latest", "earliest"):
        if leaf.kind == "earliest":
            idx = np.minimum(s.start, s.n_events - 1)
            valid = s.has
        else:
            idx_all = np.arange(s.n_events)
            last = idx_all if flag is None else np.where(flag, idx_all, -1)
            last = np.maximum.accumulate(last) if len(last) else last
            idx = last[np.maximum(hi - 1, 0)] if len(last) else np.zeros_like(hi)
            valid = s.has & (idx >= s.start)
            idx = np.maximum(idx, 0)
        if s.n_events == 0:
            return _Leaf(np.zeros(len(hi)), valid)
        age = (s.snap_s - s.ts_s[idx]).astype(np.float64) / DAY
        return _Leaf(age, valid)

    if leaf.kind == "distinct":
        return _Leaf(_distinct(*cols[plan.value[id(leaf)]], s, lo, hi), s.has)

    raise ValueError(f"aggregate kind '{leaf.kind}' has no prefix form")


def _distinct(
    values: np.ndarray, nulls: np.ndarray | None, s: _Sorted, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Distinct values among each row's events in [lo, hi). `values` are integers (codes of
    text values, -1 for null, or numbers with their null mask)."""
    n = s.n_events
    block = s.first
    if nulls is None:
        new = block.copy()
        new[1:] |= values[1:] != values[:-1]
        if n < 2 or np.all((values[1:] >= values[:-1]) | block[1:]):
            # Values that never fall within a shopper's events in time order (days): a value
            # is new where it changes, so a window holds one more value than changes inside it.
            run = _running(new)
            inside = run[hi] - run[np.minimum(lo + 1, hi)]
            return np.where(hi > lo, inside + 1, 0)
    # Any values: an event counts if its value was not seen earlier in the window, i.e. its
    # previous occurrence (same shopper, same value) falls before the window's start.
    known = np.ones(n, dtype=bool) if nulls is None else ~nulls
    shopper = np.cumsum(block) - 1
    order = np.lexsort((np.arange(n), values, shopper))
    same = np.zeros(n, dtype=bool)
    same[1:] = (values[order][1:] == values[order][:-1]) & (
        shopper[order][1:] == shopper[order][:-1]
    )
    prev = np.full(n, -1, dtype=np.int64)
    prev[order[1:][same[1:]]] = order[:-1][same[1:]]
    rows, pos = _expand(lo, hi)
    counts = (prev[pos] < lo[rows]) & known[pos]
    return np.bincount(rows, weights=counts, minlength=len(hi)).astype(np.int64)


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, position) with lo[row] <= position < hi[row]."""
    sizes = hi - lo
    rows = np.repeat(np.arange(len(hi)), sizes)
    pos = np.arange(len(rows)) - np.repeat(np.cumsum(sizes) - sizes - lo, sizes)
    return rows, pos


NULL_TIME = np.iinfo(np.int64).min


def _micros(col: pa.Array) -> np.ndarray:
    """Times as int64 microseconds (UTC), nulls as the smallest int64."""
    us = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return pc.fill_null(us, NULL_TIME).to_numpy()


def _combine(agg: Agg, s, cols, plan) -> _Leaf:
    if agg.kind != "ratio":
        return _evaluate(agg, s, cols, plan)
    num, den = (_combine(p, s, cols, plan) for p in agg.parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = num.values.astype(np.float64) / den.values.astype(np.float64)
    return _Leaf(values, num.valid & den.valid & (den.values != 0))


def prefix_columns(
    specs: Sequence,
    plan: EventPlan,
    events: pa.Table,
    entity: str,
    rows: pa.Table,
    filled: frozenset[str] = frozenset(),
) -> dict[str, pa.Array]:
    """Each spec's values for every row of `rows` (entity, snapshot_at), in its order; the
    features named in `filled` come with their declared fill in place of null (no formula
    reads them before the fills)."""
    snap_us = rows.column("snapshot_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    s = _Sorted(events, entity, rows.column(entity), snap_us.to_numpy())
    needed = {*plan.value.values(), *plan.where.values(), *plan.square.values()}
    needed |= set(plan.seen.values())
    cols: Columns = {c: s.take(events.column(c)) for c in needed}
    out = {}

    def shared(spec) -> tuple[str, str]:  # aggregates over the same values run one after another
        first = _leaves(spec.fn)[0]
        return plan.value.get(id(first), ""), plan.where.get(id(first), "")

    for spec in sorted(specs, key=shared):
        leaf = _combine(spec.fn, s, cols, plan)
        f = spec.feature
        dtype = np.int64 if spec.fn.kind in _INT_KINDS else np.float64
        values = leaf.values.astype(dtype, copy=False)
        if f.name in filled and f.fill is not None:
            values[~leaf.valid] = f.fill
            out[f.name] = pa.array(values)
        else:
            out[f.name] = pa.array(values, mask=~leaf.valid)
    return out


def _codes(row_ids: pa.ChunkedArray, ids: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' shoppers numbered 0, 1, ... in row order (the rows are sorted by shopper), and
    each event's shopper's number (-1 for a shopper with no row)."""
    row_ids = row_ids.combine_chunks()
    first = np.ones(len(row_ids), dtype=bool)
    if len(row_ids) > 1:
        first[1:] = pc.not_equal(row_ids[1:], row_ids[:-1]).to_numpy(zero_copy_only=False)
    row_code = np.cumsum(first) - 1
    found = pc.index_in(ids.cast(row_ids.type), value_set=row_ids.filter(pa.array(first)))
    return row_code, pc.fill_null(found, -1).to_numpy().astype(np.int64)


def _segmented(values: np.ndarray, block: np.ndarray, span: int, op) -> np.ndarray:
    """A running max (np.maximum) or min (np.minimum) that restarts at each block: each block
    is shifted by `span` (more than its values' range) so earlier blocks never win."""
    if op is np.maximum:
        return np.maximum.accumulate(values + block * span) - block * span
    return np.minimum.accumulate(values - block * span) + block * span


def gap_columns(
    days: pa.Table, entity: str, rows: pa.Table, *, median: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`gap_stats` for each row of `rows` (entity, snapshot_at), from the key's distinct order
    days (`order_days`: entity, day, gap): (values, valid) per statistic.

    The days a snapshot sees are a prefix of the key's days (those that ended before it), so
    counts and exact integer sums come from running totals, the smallest and largest gap from
    running minima and maxima, and the median from each snapshot's prefix, ranked once."""
    snap_us = rows.column("snapshot_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    snap_s = np.floor_divide(snap_us.to_numpy(), US)
    if days.num_rows == 0:
        nothing = (np.full(rows.num_rows, np.nan), np.zeros(rows.num_rows, dtype=bool))
        return dict.fromkeys(GAP_STATS, nothing)
    row_code, code = _codes(rows.column(entity), days.column(entity))
    # Only rows whose key has days can have a value: the rest stay null.
    with_days = np.zeros(int(row_code.max(initial=0)) + 1, dtype=bool)
    with_days[code[code >= 0]] = True
    some = np.flatnonzero(with_days[row_code])
    stats = _gap_stats(days, code, row_code[some], snap_s[some], median)
    out = {}
    for name, (values, valid) in stats.items():
        full, ok = np.full(rows.num_rows, np.nan), np.zeros(rows.num_rows, dtype=bool)
        full[some], ok[some] = values, valid
        out[name] = (full, ok)
    return out


def _gap_stats(days: pa.Table, code, row_code, snap_s, median: bool):
    day = days.column("day").to_numpy().astype(np.int64)
    gap, nulls = _numbers(days.column("gap").cast(pa.int64()))
    known = np.ones(len(day), dtype=bool) if nulls is None else ~nulls
    lo_day = int(day.min())
    stride = int(day.max()) - lo_day + 2
    key = code * stride + (day - lo_day)
    order = np.argsort(key, kind="stable")
    key, day, gap, known = key[order], day[order], gap[order], known[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = code[order][1:] != code[order][:-1]
    block = np.cumsum(first) - 1

    # A day counts once it has ended before the snapshot: day < the snapshot's day.
    cut = np.clip(np.floor_divide(snap_s, 86400) - lo_day, 0, stride - 1)
    start = np.searchsorted(key, row_code * stride, "left")
    hi = np.searchsorted(key, row_code * stride + cut, "left")
    has = hi > start
    last = np.maximum(hi - 1, 0)

    g = np.where(known, gap, 0)
    n_run, s1_run, s2_run = _running(known), _running(g), _running(g * g)
    n = n_run[hi] - n_run[start]
    s1 = s1_run[hi] - s1_run[start]
    s2 = s2_run[hi] - s2_run[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1.astype(np.float64) / n.astype(np.float64)
        var = (n * s2 - s1 * s1).astype(np.float64) / (n * (n - 1)).astype(np.float64)
        std = np.sqrt(var)
    span = int(np.abs(g).max()) + 2
    big = _segmented(np.where(known, g, -1), block, span, np.maximum)
    small = _segmented(np.where(known, g, span - 1), block, span, np.minimum)
    out = {
        "gap_count": (n.astype(np.float64), has),
        "gap_mean": (mean, has & (n > 0)),
        "gap_std": (std, has & (n >= 2)),
        "gap_min": (small[last].astype(np.float64), has & (n > 0)),
        "gap_max": (big[last].astype(np.float64), has & (n > 0)),
        "gap_last": (g[last].astype(np.float64), has & known[last]),
    }
    since = snap_s.astype(np.float64) / DAY - day[last]
    if median:
        out["gap_median"] = _prefix_medians(g, known, block, start, hi, has, snap_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, num, den in (
            ("gap_cv", out["gap_std"], out["gap_mean"]),
            ("dueness", (since, has), out["gap_mean"]),
            ("dueness_median", (since, has), out.get("gap_median")),
            ("dueness_z", (since - mean, out["gap_mean"][1]), out["gap_std"]),
        ):
            if den is not None:
                out[name] = (num[0] / den[0], num[1] & den[1] & (den[0] != 0))
    return out


def _prefix_medians(g, known, block, start, hi, has, snap_s) -> tuple[np.ndarray, np.ndarray]:
    """The median of each row's gaps (the middle one or two of the prefix [start, hi)): per
    snapshot, the keys' gaps in value order are kept where they fall inside the prefix."""
    values = np.full(len(hi), np.nan)
    valid = np.zeros(len(hi), dtype=bool)
    idx = np.flatnonzero(known)
    by_value = idx[np.lexsort((g[idx], block[idx]))]  # per key, gaps from smallest to largest
    vb = block[by_value]
    n_blocks = int(block[-1]) + 1 if len(block) else 0
    for s in np.unique(snap_s):
        r = np.flatnonzero((snap_s == s) & has)
        if not len(r):
            continue
        cut = np.full(n_blocks, -1, dtype=np.int64)
        cut[block[start[r]]] = hi[r]
        kept = by_value[by_value < cut[vb]]
        kb = block[kept]
        count = np.bincount(kb, minlength=n_blocks)
        rb = block[start[r]]
        m = count[rb]
        ok = m > 0
        first_at = np.searchsorted(kb, rb, "left")
        a = g[kept[np.where(ok, first_at + (m + 1) // 2 - 1, 0)]] if len(kept) else 0 * m
        b = g[kept[np.where(ok, first_at + (m + 2) // 2 - 1, 0)]] if len(kept) else 0 * m
        values[r] = (a.astype(np.float64) + b) / 2.0
        valid[r] = ok
    return values, valid


def to_arrays(columns: dict[str, tuple[np.ndarray, np.ndarray]], names) -> dict[str, pa.Array]:
    """The named columns as float64 Arrow arrays, null where not valid."""
    return {
        out: pa.array(columns[stat][0], type=pa.float64(), mask=~columns[stat][1])
        for stat, out in names
    }


class PerSnapshot:
    """Events grouped by shopper, for formulas whose every term depends on the snapshot (what
    is open or redeemed as of it): each snapshot takes one vectorised pass over the events,
    reducing per shopper. Cost: events times snapshots, in NumPy, with no join."""

    def __init__(self, events: pa.Table, entity: str, rows: pa.Table) -> None:
        row_code, code = _codes(rows.column(entity), events.column(entity))
        self.order = np.argsort(code, kind="stable")
        code = code[self.order]
        first = np.ones(len(code), dtype=bool)
        first[1:] = code[1:] != code[:-1]
        self.starts = np.flatnonzero(first)
        # Rows' shoppers are numbered 0..n-1 (`_codes`): each one's block, or -1 without events.
        block_of = np.full(int(row_code.max(initial=-1)) + 1, -1, dtype=np.int64)
        block_code = code[self.starts]
        mine = block_code >= 0
        block_of[block_code[mine]] = np.flatnonzero(mine)
        self.row_block = block_of[row_code]
        self.events = events
        self.snap_us = _micros(rows.column("snapshot_at").combine_chunks())

    def micros(self, name: str) -> np.ndarray:
        """An event time column (sorted by shopper) in microseconds; nulls as `NULL_TIME`."""
        return _micros(self.events.column(name).combine_chunks())[self.order]

    def snapshots(self):
        """(snapshot in microseconds, the rows at it, their shopper's block or -1)."""
        for s in np.unique(self.snap_us):
            r = np.flatnonzero(self.snap_us == s)
            yield int(s), r, self.row_block[r]

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Per shopper block: how many events `mask` holds."""
        if not len(self.starts):
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat(mask.astype(np.int64), self.starts)

    def least(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per shopper block: the least of `values` where `mask` holds (inf where none)."""
        if not len(self.starts):
            return np.zeros(0)
        return np.minimum.reduceat(np.where(mask, values, np.inf), self.starts)
