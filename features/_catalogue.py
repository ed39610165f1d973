"""How a feature is declared: once, with its name, family, window, type, description and formula.

A `Family` groups features computed from the same raw tables. Its `aggregates` are formulas
over event rows joined to snapshot times (only events strictly before the snapshot reach them);
its `derived` features are formulas over the family's own aggregates, or, for the cross-family
`trends`, over the assembled row. A `fitted` family's values come from a Python function over
the assembled rows (a model fitted per snapshot on that snapshot's rows, which only hold history
before it). `Family.features` lists the declarations for the catalogue;
the formulas are the same objects, so the list and the computation cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

WINDOWS = (7, 14, 30, 60, 90, 180, 365)
DAY = 86400.0


# Time arithmetic at whole seconds (Spark's epoch has no fractions, DuckDB's does) and in
# floats (Spark would otherwise divide in decimals and round).
def whole_seconds(ts: ir.TimestampValue) -> ir.IntegerValue:
    return ts.epoch_seconds().floor().cast("int64")


def days_since_epoch(ts: ir.TimestampValue) -> ir.FloatingValue:
    return whole_seconds(ts).cast("float64") / DAY


def days(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.FloatingValue:
    """Days from `earlier` to `later`, with fractions, at whole seconds."""
    return (whole_seconds(later) - whole_seconds(earlier)).cast("float64") / DAY


def day_index(ts: ir.TimestampValue) -> ir.IntegerValue:
    """Whole days since the epoch (UTC)."""
    return days_since_epoch(ts).floor().cast("int64")


# The event's time in whole seconds, worked out once per event before it meets the snapshots:
# time arithmetic on zone-aware timestamps goes through the engine's time-zone library, and the
# join repeats each event once per later snapshot. Day, hour and weekday then come from integer
# arithmetic (UTC, as the catalogue defines them); the epoch began on a Thursday.
def with_seconds(events: ir.Table) -> ir.Table:
    return events.mutate(ts_s=whole_seconds(events.ts))


def joined(events: ir.Table, snaps: ir.Table) -> ir.Table:
    """Each event beside every snapshot after it, with `age`: days before the snapshot."""
    events = with_seconds(events)
    snaps = snaps.mutate(snap_s=whole_seconds(snaps.snapshot_at))
    j = events.join(snaps, events.ts < snaps.snapshot_at)
    return j.mutate(age=(j.snap_s - j.ts_s).cast("float64") / DAY)


def day_of(j: ir.Table) -> ir.IntegerValue:
    """Whole days since the epoch (UTC) of each event."""
    return (j.ts_s // 86400).cast("int64") if "ts_s" in j.columns else day_index(j.ts)


def hour_of(j: ir.Table) -> ir.IntegerValue:
    """Hour of day (UTC) of each event."""
    return ((j.ts_s % 86400) // 3600).cast("int64") if "ts_s" in j.columns else j.ts.hour()


def weekday_of(j: ir.Table) -> ir.IntegerValue:
    """Day of the week (UTC) of each event: 0 Monday to 6 Sunday."""
    if "ts_s" not in j.columns:
        return j.ts.day_of_week.index()
    return ((day_of(j) + 3) % 7).cast("int64")


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    window: int | None  # days; None for all history or a point in time
    dtype: str  # "int64" or "float64"
    description: str
    fill: float | None = None  # value for a shopper with no events (None: stays null)


@dataclass(frozen=True)
class Spec:
    """A feature and its formula; `fn` takes the joined event table (or the aggregates)."""

    feature: Feature
    fn: Callable[[ir.Table], ir.Value]
    needs: tuple[str, ...] = ()  # for row formulas: the columns they read


@dataclass(frozen=True)
class Family:
    name: str
    tables: tuple[str, ...]  # raw tables it reads; the family is left out if one is missing
    description: str
    prepare: Callable[[dict[str, ir.Table]], ir.Table] | None  # events: entity, ts, ...
    aggregates: tuple[Spec, ...] = ()
    derived: tuple[Spec, ...] = ()
    entity: str = "user_id"
    # A family whose rows need more than one join and group-by builds its own table.
    build: Callable[[dict[str, ir.Table], ir.Table], ir.Table] | None = None
    # A row family (no `prepare`, no `build`, no `fitted`) computes `derived` on the assembled row.
    built_features: tuple[Feature, ...] = field(default=())
    # A fitted family: the assembled rows (Arrow) -> one array per built feature, row-aligned.
    # It runs after the engine, on the engine's output, so every engine gets the same values.
    fitted: Callable[[pa.Table], dict[str, np.ndarray]] | None = None
    # An event family may add built columns (`built_features`) from its own join: `extra`
    # gives them per (entity, snapshot), joined onto the aggregates' rows.
    extra: Callable[[dict[str, ir.Table], ir.Table], ir.Table] | None = None
    order: tuple[str, ...] = ()  # the columns' order, where it is not declaration order
    # The prefix path's own computation of `build` (or of `extra` and the aggregates that are
    # not `Agg`s): it reads the raw tables once per build and returns a function from a batch
    # of (entity, snapshot) rows to one array per built feature, row-aligned. A second
    # implementation, held to the first by `tests/features/test_prefix.py`.
    prefix: Callable[[dict[str, ir.Table]], Callable[[pa.Table], dict[str, pa.Array]]] | None = None

    @property
    def features(self) -> tuple[Feature, ...]:
        out = self.built_features + tuple(s.feature for s in (*self.aggregates, *self.derived))
        if self.order:
            rank = {name: i for i, name in enumerate(self.order)}
            out = tuple(sorted(out, key=lambda f: rank[f.name]))
        return out

    @property
    def on_row(self) -> bool:
        return self.prepare is None and self.build is None and self.fitted is None

    def compute(self, src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
        """One row per (entity, snapshot) that has events before the snapshot."""
        if self.build is not None:
            return self.build(src, snaps)
        agg = self.aggregate(src, snaps, self.aggregates)
        if self.extra is not None:
            more = self.extra(src, snaps)
            cols = [f.name for f in self.built_features]
            agg = agg.left_join(more, [self.entity, "snapshot_at"]).select(
                agg, *[more[c] for c in cols]
            )
        if self.derived:
            agg = agg.mutate(**{s.feature.name: s.fn(agg) for s in self.derived})
        return agg.select(self.entity, "snapshot_at", *[f.name for f in self.features])

    def aggregate(self, src: dict[str, ir.Table], snaps: ir.Table, specs) -> ir.Table:
        """`specs` (of this family's aggregates) by joining each event to every snapshot after
        it: the definition every other way of computing them must agree with."""
        assert self.prepare is not None
        j = joined(self.prepare(src), snaps)
        return j.group_by([self.entity, "snapshot_at"]).aggregate(
            **{s.feature.name: s.fn(j) for s in specs}
        )


class Declare:
    """Collects the specs of one family while its module declares them."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.specs: list[Spec] = []

    def __call__(
        self,
        name: str,
        description: str,
        fn: Callable[[ir.Table], ir.Value],
        *,
        dtype: str = "float64",
        window: int | None = None,
        fill: float | None = None,
        needs: tuple[str, ...] = (),
    ) -> None:
        feature = Feature(name, self.family, window, dtype, description, fill)
        self.specs.append(Spec(feature, fn, needs))

    def count(self, name: str, description: str, fn, *, window: int | None = None) -> None:
        self(name, description, fn, dtype="int64", window=window, fill=0)

    def total(self, name: str, description: str, fn, *, window: int | None = None) -> None:
        self(name, description, fn, dtype="float64", window=window, fill=0.0)

    def take(self) -> tuple[Spec, ...]:
        specs, self.specs = tuple(self.specs), []
        return specs


# Formula helpers over a joined event table `j` with an `age` column (days before the snapshot).


def n_in(j: ir.Table, window: int | None, where: ir.BooleanValue | None = None) -> ir.Value:
    cond = _cond(j, window, where)
    return cond.ifelse(1, 0).sum().cast("int64")


# Sums go through 64-bit fixed point (billionths): exact, so the result does not depend on the
# order the engine adds rows in. Without it, DuckDB's parallel aggregation and Spark give sums
# that differ in the last bit, and deleting an unrelated later event could change a feature.
# Integers add faster than decimal(38, 9) and are as exact. Each value is rounded to the
# nearest billionth (half away from zero on both engines); a sum must stay under 9.2e9 in
# magnitude (Spark's 64-bit sum), far above any shopper's spend, seconds or squared gap days.
SCALE = 1e9


def fixed(value: ir.Value) -> ir.IntegerValue:
    """`value` in billionths, as a 64-bit integer."""
    return (value.cast("float64") * SCALE).round().cast("int64")


def exact_sum(value: ir.Value) -> ir.Value:
    return fixed(value).sum().cast("float64") / SCALE


def exact_mean(value: ir.Value) -> ir.Value:
    return ratio(exact_sum(value), value.count())


def sum_in(
    j: ir.Table, value: ir.Value, window: int | None, where: ir.BooleanValue | None = None
) -> ir.Value:
    cond = _cond(j, window, where)
    return exact_sum(cond.ifelse(value.cast("float64"), 0.0))


def mean_in(
    j: ir.Table, value: ir.Value, window: int | None, where: ir.BooleanValue | None = None
) -> ir.Value:
    cond = _cond(j, window, where)
    return exact_mean(cond.ifelse(value.cast("float64"), ibis.null("float64")))


def std_in(j: ir.Table, value: ir.Value, window: int | None) -> ir.Value:
    """Sample standard deviation from the exact sums of the values and of their squares
    (each rounded to a billionth): null below two values. Sums of squares cancel badly when
    the values sit far from zero, so give it values shifted by one of the group's own (a
    shopper's first order value, say): equal values are then all 0 and their deviation is
    exactly 0."""
    cond = _cond(j, window, None)
    d = cond.ifelse(value.cast("float64"), ibis.null("float64"))
    n = d.count().cast("float64")
    m1 = fixed(d).sum().cast("float64") / SCALE
    m2 = fixed(d * d).sum().cast("float64") / SCALE
    var = ratio(m2 - ratio(m1 * m1, n), n - 1)
    var = (var < 0).ifelse(0.0, var)
    return (n < 2).ifelse(ibis.null("float64"), var.sqrt())


def distinct_in(j: ir.Table, value: ir.Value, window: int) -> ir.Value:
    """Distinct values among the events in the window."""
    return (j.age <= window).ifelse(value, None).nunique().cast("int64")


def last_age(j: ir.Table, where: ir.BooleanValue | None = None) -> ir.Value:
    """Days since the most recent event (matching `where`)."""
    if where is None:
        return j.age.min()
    return where.ifelse(j.age, ibis.null("float64")).min()


def ratio(num: ir.Value, den: ir.Value) -> ir.Value:
    """num / den, null when the denominator is zero."""
    den = den.cast("float64")
    return (den == 0).ifelse(ibis.null("float64"), num.cast("float64") / den)


def _cond(j: ir.Table, window: int | None, where: ir.BooleanValue | None) -> ir.BooleanValue:
    cond = j.age.notnull() if window is None else j.age <= window
    return cond if where is None else cond & where


# Window aggregates declared as data. An `Agg` is the feature's one definition: called on the
# joined table it is the Ibis aggregate above (what every engine runs when events meet
# snapshots by a join); its parts (what is counted, summed or told apart, and which events
# count) are per-event formulas that never read the snapshot, so the prefix path
# (`_prefix.py`) can evaluate them once per event and answer every snapshot and window from
# per-shopper running totals.
AGG_KINDS = ("count", "sum", "int_sum", "mean", "std", "latest", "earliest", "distinct", "ratio")


@dataclass(frozen=True, eq=False)
class Agg:
    kind: str
    window: int | None = None
    value: Callable[[ir.Table], ir.Value] | None = None
    where: Callable[[ir.Table], ir.BooleanValue] | None = None
    parts: tuple[Agg, ...] = ()  # a ratio's numerator and denominator
    # A time of the event's own (when what it refers to happened): the event counts only if
    # that time is known and before the snapshot. Needs a window.
    seen: Callable[[ir.Table], ir.TimestampValue] | None = None

    def __call__(self, j: ir.Table) -> ir.Value:
        value = self.value(j) if self.value is not None else None
        where = self.where(j) if self.where is not None else None
        if self.seen is not None:
            seen = self.seen(j)
            known = seen.notnull() & (seen < j.snapshot_at)
            where = known if where is None else where & known
        if self.kind == "count":
            return n_in(j, self.window, where)
        if self.kind == "sum":
            return sum_in(j, value, self.window, where)
        if self.kind == "int_sum":
            return _cond(j, self.window, where).ifelse(value, 0).sum().cast("int64")
        if self.kind == "mean":
            return mean_in(j, value, self.window, where)
        if self.kind == "std":
            return std_in(j, value, self.window)
        if self.kind == "latest":
            return last_age(j, where)
        if self.kind == "earliest":
            return j.age.max()
        if self.kind == "distinct":
            return _cond(j, self.window, None).ifelse(value, None).nunique().cast("int64")
        if self.kind == "ratio":
            return ratio(self.parts[0](j), self.parts[1](j))
        raise ValueError(f"aggregate kind '{self.kind}': expected one of {AGG_KINDS}")


def count_of(window: int | None = None, where=None, seen=None) -> Agg:
    """Events (matching `where`, and with their `seen` time before the snapshot) in the
    window."""
    if seen is not None and window is None:
        raise ValueError("a count of events seen before the snapshot needs a window")
    return Agg("count", window, where=where, seen=seen)


def sum_of(value, window: int | None = None, where=None) -> Agg:
    """The exact sum of `value` over the events (matching `where`) in the window."""
    return Agg("sum", window, value, where)


def int_sum_of(value, window: int | None = None) -> Agg:
    """The sum of an integer `value` over the events in the window."""
    return Agg("int_sum", window, value)


def mean_of(value, window: int | None = None, where=None) -> Agg:
    """The exact mean of `value` over the events (matching `where`) in the window."""
    return Agg("mean", window, value, where)


def std_of(value, window: int | None = None) -> Agg:
    """The sample standard deviation of `value` over the events in the window (`std_in`)."""
    return Agg("std", window, value)


def latest_age(where=None) -> Agg:
    """Days since the most recent event (matching `where`)."""
    return Agg("latest", where=where)


def earliest_age() -> Agg:
    """Days since the first event."""
    return Agg("earliest")


def distinct_of(value, window: int | None = None) -> Agg:
    """Distinct non-null values of `value` among the events in the window."""
    return Agg("distinct", window, value)


def ratio_of(num: Agg, den: Agg) -> Agg:
    """num / den, null when the denominator is zero."""
    return Agg("ratio", parts=(num, den))


HOUR_BANDS = (("night", 0, 6), ("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24))


def declare_time_shares(d: Declare, what: str, window: int) -> None:
    """Shares of `what` (orders, sessions) by hour band and on weekends, over a window."""
    for band, lo, hi in HOUR_BANDS:
        d(
            f"{what}_{band}_share_{window}d",
            f"share of {what} in the last {window} days at {lo:02d}:00-{hi:02d}:00 UTC",
            mean_of(
                lambda e, lo=lo, hi=hi: ((hour_of(e) >= lo) & (hour_of(e) < hi)).ifelse(1.0, 0.0),
                window,
            ),
            window=window,
        )
    d(
        f"{what}_weekend_share_{window}d",
        f"share of {what} in the last {window} days on a weekend",
        mean_of(lambda e: (weekday_of(e) >= 5).ifelse(1.0, 0.0), window),
        window=window,
    )
