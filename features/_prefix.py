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

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

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

    table: ir.Table | None  # entity, ts, one column per distinct part (None once read)
    value: dict[int, str]  # id(leaf) -> column of its value
    where: dict[int, str]  # id(leaf) -> column of its condition
    square: dict[int, str]  # id(leaf) -> column of its value squared (a std's)
    seen: dict[int, str]  # id(leaf) -> column of the time it must be seen before the snapshot

    @property
    def columns(self) -> set[str]:
        """The part columns the aggregates read."""
        return {*self.value.values(), *self.where.values(), *self.square.values()} | set(
            self.seen.values()
        )


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
    overflow, as long as the window's own total fits). Running counts (of a mask) fit in
    32 bits below 2**31 events, which halves the memory they pass through."""
    dtype = np.int32 if x.dtype == np.bool_ and len(x) < 2**31 - 1 else np.int64
    out = np.zeros(len(x) + 1, dtype=dtype)
    np.cumsum(x, dtype=dtype, out=out[1:])
    return out


def _numbers(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values with nulls as 0, and the null mask (None when there are none)."""
    nulls = col.null_count
    values = pc.fill_null(col, 0).to_numpy() if nulls else col.to_numpy()
    mask = col.is_null().to_numpy(zero_copy_only=False) if nulls else None
    return values, mask


def _numbered(ids: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct shoppers of `ids` (no null) in sorted order, and each entry's number among
    them (-1 for null). Rows sorted by shopper then number their shoppers in rising order,
    which keeps their binary searches in the events close together."""
    # One hashing pass: the values met in order, and each entry's index among them.
    encoded = pc.dictionary_encode(ids.combine_chunks())
    met = encoded.dictionary  # nulls are null indices, not values
    order = pc.sort_indices(met).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    indices = encoded.indices
    code = rank[pc.fill_null(indices, 0).to_numpy()] if len(rank) else np.zeros(len(indices))
    if indices.null_count:
        code[indices.is_null().to_numpy(zero_copy_only=False)] = -1
    return met.take(pa.array(order)), code.astype(np.int64, copy=False)


def _number(ids: pa.ChunkedArray | pa.Array, distinct: pa.Array) -> np.ndarray:
    """Each of `ids`' number in `distinct` (-1 where it is not there)."""
    found = pc.index_in(ids.cast(distinct.type), value_set=distinct)
    return pc.fill_null(found, -1).to_numpy().astype(np.int64)


class Budget:
    """Bytes a build may spend holding something for all its batches (sorted events, running
    totals), shared by its groups, from any thread."""

    def __init__(self, nbytes: int) -> None:
        self.left = nbytes
        self.exceeded = False  # a request was refused
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        with self._lock:
            if self.exceeded or nbytes > self.left:
                self.exceeded = True
                return False
            self.left -= nbytes
            return True

    def close(self) -> None:
        """Grants nothing more."""
        with self._lock:
            self.exceeded = True


class EventIndex:
    """A group of families' events sorted by shopper and time, once per build: every batch of
    rows (`Lookup`) searches the same sorted events."""

    def __init__(
        self,
        events: pa.Table,
        entity: str,
        snapshots_us: np.ndarray,
        columns,
        budget: Budget | None = None,
    ):
        self.ids, ev_code = _numbered(events.column(entity))
        ts_us = events.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        ts_us = ts_us.to_numpy()
        events = events.select(list(columns))
        ts_s = np.floor_divide(ts_us, US)
        snaps = np.unique(snapshots_us)
        # Events are found by a key of (shopper, time). When every snapshot of the build is a
        # whole second, "before the snapshot" and every window bound are questions about whole
        # seconds, so the time is the second, offset from the first; otherwise it is the
        # event time's rank.
        self.whole = len(ts_s) > 0 and bool(np.all(snaps % US == 0))
        if self.whole:
            self.t0 = int(ts_s.min())
            self.span = int(ts_s.max()) - self.t0 + 1
            self.whole = (len(self.ids) + 2) * (self.span + 1) < 2**62
        if self.whole:
            self.stride = self.span + 1
            key = ev_code * self.stride + (ts_s - self.t0)
        else:
            self.times, inverse = np.unique(ts_us, return_inverse=True)
            self.stride = len(self.times) + 1
            key = ev_code * self.stride + inverse
        self.order = np.argsort(key)  # ties are events of one shopper in one second
        self.key = key[self.order]
        code = ev_code[self.order]
        self.first = np.ones(len(key), dtype=bool)  # each shopper's first event
        self.first[1:] = code[1:] != code[:-1]
        self.n_events = len(key)
        del ts_us, ts_s, key, code, ev_code
        # Column by column, each Arrow column let go once sorted: the events are not held
        # twice (the caller hands over its only reference).
        self.cols: Columns = {}
        for c in columns:
            self.cols[c] = self._take(events.column(c))
            events = events.drop_columns([c])
        del events, self.order  # the sort is not needed once the columns are in its order
        self._memo: dict[tuple, np.ndarray] = {}
        self._kept: dict[tuple, np.ndarray] = {}
        self.budget = budget
        self._lock = threading.Lock()

    def rank(self, bound_us: np.ndarray) -> np.ndarray:
        """Where a time bound falls among the events' times (the key's time part)."""
        if self.whole:
            return np.clip(bound_us // US - self.t0, 0, self.span)
        return np.searchsorted(self.times, bound_us, "left")

    @property
    def nbytes(self) -> int:
        """What the sorted events hold."""
        arrays = [self.key, self.first, *(a for pair in self.cols.values() for a in pair)]
        return sum(a.nbytes for a in arrays if a is not None)

    def seconds(self, at: np.ndarray) -> np.ndarray:
        """The whole-second times of the events at positions `at` (read off the key)."""
        part = self.key[at] % self.stride
        if self.whole:
            return part + self.t0
        return np.floor_divide(self.times[np.minimum(part, len(self.times) - 1)], US)

    def kept(self, key: tuple) -> np.ndarray | None:
        return self._kept.get(key)

    def keep(self, key: tuple, run: np.ndarray) -> bool:
        """Keeps `run` for the build if the budget allows; whether it is kept."""
        with self._lock:
            if key not in self._kept:
                if self.budget is None or not self.budget.take(run.nbytes):
                    return False
                self._kept[key] = run
            return True

    def memo(self, key: tuple, make) -> np.ndarray:
        """A per-event array that does not depend on the rows, made once per build."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = make()
            return self._memo[key]

    def _take(self, col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
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


class Lookup:
    """Where each of a batch of rows (shopper, snapshot) falls in an `EventIndex`: its
    shopper's first event, the first at or after its snapshot, and each window's start."""

    def __init__(self, index: EventIndex, code: np.ndarray, snap_us: np.ndarray):
        """`code`: each row's shopper's number in the index (-1: no events)."""
        self.index = index
        self.n_events, self.first = index.n_events, index.first
        known = code >= 0  # a shopper with no events has empty windows
        snaps, at = np.unique(snap_us, return_inverse=True)  # the rows' few snapshots
        base = np.where(known, code, 0) * index.stride

        def position(bound_us: np.ndarray) -> np.ndarray:
            """Each row's position of its first event at or after its bound (a function of
            its snapshot, given per distinct snapshot)."""
            found = np.searchsorted(index.key, base + index.rank(bound_us)[at], "left")
            return np.where(known, found, 0)

        self.snaps_s = np.floor_divide(snaps, US)
        self.snap_us = snap_us
        self.snap_s = np.floor_divide(snap_us, US)
        self.start = np.where(known, np.searchsorted(index.key, base, "left"), 0)
        self.hi = position(snaps)
        self.has = self.hi > self.start  # an event before the snapshot: the join has the row
        self._position = position
        self._lo: dict[int | None, np.ndarray] = {None: self.start}
        self._runs: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def running(self, key: tuple, make) -> np.ndarray:
        """Running totals of `make()`: kept for the whole build while its budget lasts
        (every later batch reads them), otherwise for this batch's next aggregates over the
        same values (the same count or sum over other windows), a few at a time."""
        kept = self.index.kept(key)
        if kept is not None:
            return kept
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        run = _running(make())
        if self.index.keep(key, run):
            return run
        self._runs[key] = run
        if len(self._runs) > 4:
            self._runs.popitem(last=False)
        return run

    def lo(self, window: int | None) -> np.ndarray:
        if window not in self._lo:
            self._lo[window] = self._position((self.snaps_s - window * 86400) * US)
        return self._lo[window]


class _Leaf:
    """One aggregate's values per row: numbers and a validity mask."""

    def __init__(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.values, self.valid = values, valid


Columns = dict[str, tuple[np.ndarray, np.ndarray | None]]


def _evaluate(leaf: Agg, s: Lookup, cols: Columns, plan: EventPlan) -> _Leaf:
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

            def latest_match() -> np.ndarray:  # each event's latest matching event so far
                idx_all = np.arange(s.n_events)
                last = idx_all if flag is None else np.where(flag, idx_all, -1)
                return np.maximum.accumulate(last) if len(last) else last

            last = s.index.memo(("latest", plan.where.get(id(leaf))), latest_match)
            idx = last[np.maximum(hi - 1, 0)] if len(last) else np.zeros_like(hi)
            valid = s.has & (idx >= s.start)
            idx = np.maximum(idx, 0)
        if s.n_events == 0:
            return _Leaf(np.zeros(len(hi)), valid)
        age = (s.snap_s - s.index.seconds(idx)).astype(np.float64) / DAY
        return _Leaf(age, valid)

    if leaf.kind == "distinct":
        vcol = plan.value[id(leaf)]
        return _Leaf(_distinct(vcol, *cols[vcol], s, lo, hi), s.has)

    raise ValueError(f"aggregate kind '{leaf.kind}' has no prefix form")


def _distinct(
    name: str,
    values: np.ndarray,
    nulls: np.ndarray | None,
    s: Lookup,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """Distinct values among each row's events in [lo, hi). `values` (the column `name`) are
    integers (codes of text values, -1 for null, or numbers with their null mask)."""
    n = s.n_events
    block = s.first
    if nulls is None:

        def changes() -> np.ndarray:  # running count of value changes; empty if values fall
            new = block.copy()
            new[1:] |= values[1:] != values[:-1]
            if n < 2 or np.all((values[1:] >= values[:-1]) | block[1:]):
                return _running(new)
            return np.zeros(0, dtype=np.int64)

        run = s.index.memo(("changes", name), changes)
        if len(run):
            # Values that never fall within a shopper's events in time order (days): a value
            # is new where it changes, so a window holds one more value than changes inside it.
            inside = run[hi] - run[np.minimum(lo + 1, hi)]
            return np.where(hi > lo, inside + 1, 0)

    # Any values: an event counts if its value was not seen earlier in the window, i.e. its
    # previous occurrence (same shopper, same value) falls before the window's start.
    def previous() -> np.ndarray:
        shopper = np.cumsum(block) - 1
        order = np.lexsort((np.arange(n), values, shopper))
        same = np.zeros(n, dtype=bool)
        same[1:] = (values[order][1:] == values[order][:-1]) & (
            shopper[order][1:] == shopper[order][:-1]
        )
        prev = np.full(n, -1, dtype=np.int64)
        prev[order[1:][same[1:]]] = order[:-1][same[1:]]
        return prev

    prev = s.index.memo(("previous", name), previous)
    known = np.ones(n, dtype=bool) if nulls is None else ~nulls
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


class PrefixGroup:
    """The window aggregates (`specs`) of the families built from one set of events
    (`prepare`): the events read and sorted once per build, then answered for any batch of
    rows; or, when the build's sorted events do not fit its `room`, read again by each
    batch."""

    def __init__(
        self,
        specs: Sequence,
        prepare,
        entity: str,
        src: dict[str, ir.Table],
        snapshots_us: np.ndarray,
        population: pa.Array | None = None,
        budget: Budget | None = None,
        room: Budget | None = None,
    ):
        """`population`: the build's shoppers, whose numbers in the events are looked up once
        (rows then give their shopper's position in it). `budget`: for running totals kept
        across batches. `room`: for the sorted events themselves (None: no limit)."""
        self.specs, self.prepare, self.entity = list(specs), prepare, entity
        self.snapshots_us = snapshots_us
        self.plan = self.index = self.known = None  # None: read by each batch
        if room is not None and room.exceeded:
            return
        self.plan, self.index = self._read(src, budget)
        if room is not None and not room.take(self.index.nbytes):
            self.read_by_each_batch()
            return
        if population is not None:
            self.known = _number(population, self.index.ids)

    def read_by_each_batch(self) -> None:
        """Lets go of the sorted events: each batch reads them again."""
        self.plan = self.index = self.known = None

    def _read(self, src: dict[str, ir.Table], budget: Budget | None):
        """The events, sorted, and the plan naming their columns (kept without its table, so
        the connection they came from need not outlive the reading)."""
        plan = event_plan(self.prepare, self.entity, src, self.specs)
        assert plan.table is not None
        events = plan.table.to_pyarrow()
        index = EventIndex(events, self.entity, self.snapshots_us, sorted(plan.columns), budget)
        return replace(plan, table=None), index

    @property
    def per_batch(self) -> bool:
        return self.index is None

    def columns(
        self,
        rows: pa.Table,
        filled: frozenset[str] = frozenset(),
        members: np.ndarray | None = None,
        src: dict[str, ir.Table] | None = None,
    ) -> dict[str, pa.Array]:
        """Each spec's values for every row of `rows` (entity, snapshot_at), in its order; the
        features named in `filled` come with their declared fill in place of null (no formula
        reads them before the fills). `members`: each row's shopper's position in the
        population the group was prepared with. `src`: the batch's raw tables, for a group
        read by each batch."""
        snap_us = _micros(rows.column("snapshot_at").combine_chunks())
        plan, index, known = self.plan, self.index, self.known
        if index is None:
            if src is None:
                raise ValueError("a group read by each batch needs the batch's tables")
            plan, index = self._read(src, None)
        if members is not None and known is not None:
            code = known[members]
        else:
            code = _number(rows.column(self.entity), index.ids)
        s = Lookup(index, code, snap_us)
        cols = index.cols
        out = {}

        def shared(spec) -> tuple[str, str]:  # aggregates over the same values in a row
            first = _leaves(spec.fn)[0]
            return plan.value.get(id(first), ""), plan.where.get(id(first), "")

        for spec in sorted(self.specs, key=shared):
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


def _segmented(values: np.ndarray, block: np.ndarray, span: int, op) -> np.ndarray:
    """A running max (np.maximum) or min (np.minimum) that restarts at each block: each block
    is shifted by `span` (more than its values' range) so earlier blocks never win."""
    if op is np.maximum:
        return np.maximum.accumulate(values + block * span) - block * span
    return np.minimum.accumulate(values - block * span) + block * span


class GapIndex:
    """A key's distinct order days (`order_days`: entity, day, gap), sorted by key and day once
    per build, with what does not depend on the rows: running counts and exact integer sums,
    running minima and maxima, and each key's gaps in value order.

    The days a snapshot sees are a prefix of the key's days (those that ended before it), so
    `columns` answers any batch of rows by binary search, and the median from each snapshot's
    prefix."""

    def __init__(self, days: pa.Table, entity: str, *, median: bool = True) -> None:
        self.entity, self.median, self.n_days = entity, median, days.num_rows
        if not self.n_days:
            return
        self.ids, code = _numbered(days.column(entity))
        day = days.column("day").to_numpy().astype(np.int64)
        gap, nulls = _numbers(days.column("gap").cast(pa.int64()))
        known = np.ones(len(day), dtype=bool) if nulls is None else ~nulls
        self.lo_day = int(day.min())
        self.stride = int(day.max()) - self.lo_day + 2
        key = code * self.stride + (day - self.lo_day)
        order = np.argsort(key, kind="stable")
        self.key, self.day, known = key[order], day[order], known[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = code[order][1:] != code[order][:-1]
        self.block = np.cumsum(first) - 1
        self.known = known
        self.g = g = np.where(known, gap[order], 0)
        self.runs = _running(known), _running(g), _running(g * g)
        span = int(np.abs(g).max()) + 2
        self.big = _segmented(np.where(known, g, -1), self.block, span, np.maximum)
        self.small = _segmented(np.where(known, g, span - 1), self.block, span, np.minimum)
        if median:
            idx = np.flatnonzero(known)  # per key, gaps from smallest to largest
            self.by_value = idx[np.lexsort((g[idx], self.block[idx]))]

    def columns(self, rows: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """`gap_stats` for each row of `rows` (entity, snapshot_at): (values, valid) per
        statistic."""
        snap_s = np.floor_divide(_micros(rows.column("snapshot_at").combine_chunks()), US)
        n_rows = rows.num_rows
        if not self.n_days:
            nothing = (np.full(n_rows, np.nan), np.zeros(n_rows, dtype=bool))
            return dict.fromkeys(GAP_STATS, nothing)
        code = _number(rows.column(self.entity), self.ids)
        # Only rows whose key has days can have a value: the rest stay null.
        some = np.flatnonzero(code >= 0)
        stats = self._stats(code[some], snap_s[some])
        out = {}
        for name, (values, valid) in stats.items():
            full, ok = np.full(n_rows, np.nan), np.zeros(n_rows, dtype=bool)
            full[some], ok[some] = values, valid
            out[name] = (full, ok)
        return out

    def _stats(self, row_code: np.ndarray, snap_s: np.ndarray):
        key, g, known = self.key, self.g, self.known
        # A day counts once it has ended before the snapshot: day < the snapshot's day.
        cut = np.clip(np.floor_divide(snap_s, 86400) - self.lo_day, 0, self.stride - 1)
        start = np.searchsorted(key, row_code * self.stride, "left")
        hi = np.searchsorted(key, row_code * self.stride + cut, "left")
        has = hi > start
        last = np.maximum(hi - 1, 0)
        n_run, s1_run, s2_run = self.runs
        n = n_run[hi] - n_run[start]
        s1 = s1_run[hi] - s1_run[start]
        s2 = s2_run[hi] - s2_run[start]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1.astype(np.float64) / n.astype(np.float64)
            var = (n * s2 - s1 * s1).astype(np.float64) / (n * (n - 1)).astype(np.float64)
            std = np.sqrt(var)
        out = {
            "gap_count": (n.astype(np.float64), has),
            "gap_mean": (mean, has & (n > 0)),
            "gap_std": (std, has & (n >= 2)),
            "gap_min": (self.small[last].astype(np.float64), has & (n > 0)),
            "gap_max": (self.big[last].astype(np.float64), has & (n > 0)),
            "gap_last": (g[last].astype(np.float64), has & known[last]),
        }
        since = snap_s.astype(np.float64) / DAY - self.day[last]
        if self.median:
            out["gap_median"] = _prefix_medians(
                g, self.by_value, self.block, start, hi, has, snap_s
            )
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


def _prefix_medians(g, by_value, block, start, hi, has, snap_s) -> tuple[np.ndarray, np.ndarray]:
    """The median of each row's gaps (the middle one or two of the prefix [start, hi)): per
    snapshot, the keys' gaps in value order (`by_value`) are kept where they fall inside the
    prefix."""
    values = np.full(len(hi), np.nan)
    valid = np.zeros(len(hi), dtype=bool)
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
    """Events grouped by shopper (once per build), for formulas whose every term depends on
    the snapshot (what is open or redeemed as of it): each snapshot of a batch of rows takes
    one vectorised pass over the events, reducing per shopper. Cost: events times snapshots,
    in NumPy, with no join."""

    def __init__(self, events: pa.Table, entity: str) -> None:
        self.entity = entity
        self.ids, code = _numbered(events.column(entity))
        self.order = np.argsort(code, kind="stable")
        code = code[self.order]
        first = np.ones(len(code), dtype=bool)
        first[1:] = code[1:] != code[:-1]
        self.starts = np.flatnonzero(first)
        # Each shopper's block of events (-1: none; null shoppers' events are a block no row
        # reaches).
        self.block_of = np.full(len(self.ids), -1, dtype=np.int64)
        block_code = code[self.starts]
        mine = block_code >= 0
        self.block_of[block_code[mine]] = np.flatnonzero(mine)
        self.events = events

    def micros(self, name: str) -> np.ndarray:
        """An event time column (sorted by shopper) in microseconds; nulls as `NULL_TIME`."""
        return _micros(self.events.column(name).combine_chunks())[self.order]

    def snapshots(self, rows: pa.Table):
        """For each snapshot of `rows` (entity, snapshot_at): (the snapshot in microseconds,
        the rows at it, their shopper's block or -1)."""
        code = _number(rows.column(self.entity), self.ids)
        row_block = np.full(len(code), -1, dtype=np.int64)
        row_block[code >= 0] = self.block_of[code[code >= 0]]
        snap_us = _micros(rows.column("snapshot_at").combine_chunks())
        for s in np.unique(snap_us):
            r = np.flatnonzero(snap_us == s)
            yield int(s), r, row_block[r]

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A number column (sorted by shopper): values with nulls as 0, and the null mask."""
        values, nulls = _numbers(self.events.column(name).combine_chunks())
        if nulls is None:
            nulls = np.zeros(len(values), dtype=bool)
        return values[self.order], nulls[self.order]

    def total(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per shopper block: the sum of `values` where `mask` holds."""
        if not len(self.starts):
            return np.zeros(0, dtype=values.dtype)
        return np.add.reduceat(np.where(mask, values, 0), self.starts)

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
