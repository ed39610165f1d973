"""Order-derived families: recency/frequency/monetary, gaps and due-ness, categories, basket,
time habits, and the BG/NBD quantities. Those needing only the `orders` table (orders, gaps,
time habits, btyd) are what an imported order log gets."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cadence.features._btyd import BTYDFitError, days_to_next, expected_orders, fit_bgnbd, p_alive
from cadence.features._catalogue import (
    WINDOWS,
    Declare,
    Family,
    Feature,
    count_of,
    day_index,
    day_of,
    days_since_epoch,
    declare_time_shares,
    distinct_of,
    earliest_age,
    exact_sum,
    hour_of,
    int_sum_of,
    latest_age,
    mean_of,
    ratio,
    ratio_of,
    std_of,
    sum_of,
    weekday_of,
)
from cadence.features._prefix import GapIndex, to_arrays

CYCLE_CATEGORIES = ("infant_formula", "diapers", "pet_food", "coffee", "skincare", "household")
OTHER_CATEGORIES = ("snacks", "electronics", "apparel", "books", "appliances", "toys")
CHANNELS = ("app", "web", "mini_program", "store")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _orders(src: dict[str, ir.Table]) -> ir.Table:
    o = src["orders"]
    # The shopper's first order value (by time, then value): a fixed point from before every
    # snapshot that sees any of their orders, to measure the spread of order values from.
    first = ibis.window(group_by=o.user_id, order_by=[o.ordered_at, o.amount])
    return o.select(
        "user_id",
        "amount",
        "discount",
        "n_items",
        "channel",
        ts=o.ordered_at,
        first_amount=o.amount.first().over(first),
    )


def _lines(src: dict[str, ir.Table]) -> ir.Table:
    o, i, p = src["orders"], src["order_items"], src["products"]
    lines = i.join(o, "order_id").join(p, "sku")
    return lines.select(
        "user_id",
        "order_id",
        "sku",
        "category",
        "quantity",
        "unit_price",
        "weight_kg",
        "fragile",
        ts=lines.ordered_at,
    )


# --- orders: recency, frequency, monetary ------------------------------------------------------
d = Declare("orders")
for w in WINDOWS:
    d.count(f"orders_{w}d", f"orders placed in the last {w} days", count_of(w), window=w)
    d.total(
        f"spend_{w}d",
        f"amount paid in the last {w} days",
        sum_of(lambda e: e.amount, w),
        window=w,
    )
d.count("orders_all", "orders placed since the data began", count_of())
d.total("spend_all", "amount paid since the data began", sum_of(lambda e: e.amount))
d(
    "order_value_std",
    "standard deviation of order value since the data began (two orders or more)",
    std_of(lambda e: e.amount - e.first_amount),
)
d("days_since_last_order", "days since the most recent order", latest_age())
d("days_since_first_order", "days since the first order", earliest_age())
for w in (30, 90, 365):
    d.count(
        f"order_days_{w}d",
        f"distinct days with an order in the last {w} days",
        distinct_of(day_of, w),
        window=w,
    )
d.count(
    "order_days_all",
    "distinct days with an order since the data began",
    distinct_of(day_of),
)
for w in (90, 365):
    d(
        f"discount_share_{w}d",
        f"share of orders in the last {w} days that used a coupon",
        mean_of(lambda e: (e.discount > 0).ifelse(1.0, 0.0), w),
        window=w,
    )
    d(
        f"items_per_order_{w}d",
        f"mean items per order in the last {w} days",
        mean_of(lambda e: e.n_items, w),
        window=w,
    )
for ch in CHANNELS:
    d(
        f"channel_{ch}_share_365d",
        f"share of orders in the last 365 days placed via {ch}",
        mean_of(lambda e, ch=ch: (e.channel == ch).ifelse(1.0, 0.0), 365),
        window=365,
    )
_orders_aggs = d.take()
for w in WINDOWS:
    d(
        f"order_value_{w}d",
        f"mean order value in the last {w} days",
        lambda a, w=w: ratio(a[f"spend_{w}d"], a[f"orders_{w}d"]),
        window=w,
    )
ORDERS = Family(
    "orders",
    ("orders",),
    "recency, frequency and monetary value of orders",
    _orders,
    _orders_aggs,
    d.take(),
)


# --- gaps: inter-purchase gaps and due-ness --------------------------------------------------
GAPS_FEATURES = tuple(
    Feature(name, "gaps", None, "float64", desc, fill)
    for name, desc, fill in [
        ("gap_count", "number of gaps between distinct order days", 0.0),
        ("gap_mean", "mean days between distinct order days", None),
        ("gap_median", "median days between distinct order days", None),
        ("gap_std", "standard deviation of days between order days", None),
        ("gap_min", "shortest gap between order days", None),
        ("gap_max", "longest gap between order days", None),
        ("gap_last", "the most recent gap between order days", None),
        ("gap_cv", "coefficient of variation of gaps (std / mean)", None),
        ("dueness", "days since the last order day over the mean gap (1 = due now)", None),
        ("dueness_median", "days since the last order day over the median gap", None),
        ("dueness_z", "(days since last order day - mean gap) / gap std", None),
    ]
)


def order_days(rows: ir.Table, keys: list[str]) -> ir.Table:
    """Distinct order days per key, each with the gap (whole days) since the key's previous one."""
    day = day_index(rows.ts)
    days = rows.select(*keys, day=day).distinct()
    w = ibis.window(group_by=[days[k] for k in keys], order_by=days.day)
    return days.mutate(gap=(days.day - days.day.lag().over(w)).cast("int64"))


def integer_std(n: ir.Value, s1: ir.Value, s2: ir.Value) -> ir.Value:
    """Sample standard deviation of `n` whole numbers from their exact sum `s1` and sum of
    squares `s2`: n*s2 - s1^2 is computed in integers, so it is exact (0 when the values are
    all equal) and one division and a square root are the only roundings. Null below two."""
    num = (n * s2 - s1 * s1).cast("float64")
    var = num / (n * (n - 1)).cast("float64")
    return (n < 2).ifelse(ibis.null("float64"), var.sqrt())


def gap_stats(days: ir.Table, snaps: ir.Table, keys: list[str]) -> ir.Table:
    """Gap statistics per key and snapshot, from order days strictly before the snapshot."""
    snap_day = days_since_epoch(snaps.snapshot_at)
    s = snaps.mutate(snap_day=snap_day)
    j = days.join(s, days.day < s.snap_day)  # a day counts once it has ended before t
    j = j.filter(j.day + 1 <= j.snap_day)
    groups = [*keys, "snapshot_at"]
    n = j.gap.count().cast("int64")
    s1 = j.gap.sum().cast("int64")
    g = j.group_by(groups).aggregate(
        gap_count=n.cast("float64"),
        gap_mean=ratio(s1, n),
        gap_std=integer_std(n, s1, (j.gap * j.gap).sum().cast("int64")),
        gap_min=j.gap.min().cast("float64"),
        gap_max=j.gap.max().cast("float64"),
        gap_last=j.gap.argmax(j.day).cast("float64"),
        last_day=j.day.max(),
        snap_day=j.snap_day.max(),
    )
    # Exact median on every engine: the middle one or two gaps by rank.
    r = j.filter(j.gap.notnull())
    part = [r[k] for k in groups]
    r = r.mutate(
        rn=ibis.row_number().over(ibis.window(group_by=part, order_by=r.gap)) + 1,
        n=r.gap.count().over(ibis.window(group_by=part)),
    )
    r = r.filter((r.rn == (r.n + 1) // 2) | (r.rn == (r.n + 2) // 2))
    med = r.group_by(groups).aggregate(gap_median=r.gap.cast("float64").mean())
    g = g.left_join(med, groups).select(g, med.gap_median)
    since = g.snap_day - g.last_day
    return g.mutate(
        gap_cv=ratio(g.gap_std, g.gap_mean),
        dueness=ratio(since, g.gap_mean),
        dueness_median=ratio(since, g.gap_median),
        dueness_z=ratio(since - g.gap_mean, g.gap_std),
        since=since,
    )


def _gaps(src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    g = gap_stats(order_days(_orders(src), ["user_id"]), snaps, ["user_id"])
    return g.select("user_id", "snapshot_at", *[f.name for f in GAPS_FEATURES])


def _gaps_prefix(src: dict[str, ir.Table]):
    index = GapIndex(order_days(_orders(src), ["user_id"]).to_pyarrow(), "user_id")
    names = [(f.name, f.name) for f in GAPS_FEATURES]
    return lambda rows: to_arrays(index.columns(rows), names)


GAPS = Family(
    "gaps",
    ("orders",),
    "inter-purchase gaps and due-ness",
    None,
    build=_gaps,
    built_features=GAPS_FEATURES,
    prefix=_gaps_prefix,
)


# --- categories: per-category recency, counts, spend, and cycles for replenished ones ----------
def _category_orders(src: dict[str, ir.Table]) -> ir.Table:
    """One event per (order, category): its time and what it cost."""
    lines = _lines(src)
    return lines.group_by(["user_id", "order_id", "category"]).aggregate(
        ts=lines.ts.min(), spend=exact_sum(lines.unit_price * lines.quantity)
    )


d = Declare("categories")
_order: list[str] = []
for c in CYCLE_CATEGORIES + OTHER_CATEGORIES:

    def is_c(e, c=c):
        return e.category == c

    d(f"{c}_days_since", f"days since the last {c} purchase", latest_age(is_c))
    d.count(
        f"{c}_orders_365d",
        f"orders with {c} in the last 365 days",
        count_of(365, is_c),
        window=365,
    )
    d.total(
        f"{c}_spend_365d",
        f"spend on {c} in the last 365 days",
        sum_of(lambda e: e.spend, 365, is_c),
        window=365,
    )
    _order += [f"{c}_days_since", f"{c}_orders_365d", f"{c}_spend_365d"]
CYCLE_STATS = ("gap_mean", "gap_std", "gap_last", "dueness")
_cycle_features = []
for c in CYCLE_CATEGORIES:
    d.count(
        f"{c}_orders_90d",
        f"orders with {c} in the last 90 days",
        count_of(90, lambda e, c=c: e.category == c),
        window=90,
    )
    _cycle_features += [
        Feature(f"{c}_gap_mean", "categories", None, "float64", f"mean days between {c} purchases"),
        Feature(
            f"{c}_gap_std",
            "categories",
            None,
            "float64",
            f"standard deviation of days between {c} purchases",
        ),
        Feature(
            f"{c}_gap_last",
            "categories",
            None,
            "float64",
            f"the most recent gap between {c} purchases",
        ),
        Feature(
            f"{c}_dueness",
            "categories",
            None,
            "float64",
            f"days since the last {c} purchase over its mean gap (1 = due now)",
        ),
    ]
    _order += [f"{c}_orders_90d", *(f"{c}_{stat}" for stat in CYCLE_STATS)]


def _category_cycles(src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    """Gap statistics per replenished category, one column each, per (shopper, snapshot)."""
    lines = _lines(src)
    cyc = lines.filter(lines.category.isin(CYCLE_CATEGORIES))
    g = gap_stats(order_days(cyc, ["user_id", "category"]), snaps, ["user_id", "category"])
    pivot = {}
    for c in CYCLE_CATEGORIES:
        is_c = g.category == c
        for stat in CYCLE_STATS:
            pivot[f"{c}_{stat}"] = is_c.ifelse(g[stat], ibis.null("float64")).max()
    return g.group_by(["user_id", "snapshot_at"]).aggregate(**pivot)


def _category_cycles_prefix(src: dict[str, ir.Table]):
    lines = _lines(src)
    cyc = lines.filter(lines.category.isin(CYCLE_CATEGORIES))
    days = order_days(cyc, ["user_id", "category"]).to_pyarrow()
    indexes = {
        c: GapIndex(days.filter(pc.equal(days.column("category"), c)), "user_id", median=False)
        for c in CYCLE_CATEGORIES
    }

    def columns(rows: pa.Table) -> dict[str, pa.Array]:
        out = {}
        for c, index in indexes.items():
            stats = index.columns(rows)
            out.update(to_arrays(stats, [(stat, f"{c}_{stat}") for stat in CYCLE_STATS]))
        return out

    return columns


CATEGORIES = Family(
    "categories",
    ("orders", "order_items", "products"),
    "per-category recency, counts, spend and replenishment cycles",
    _category_orders,
    d.take(),
    built_features=tuple(_cycle_features),
    extra=_category_cycles,
    order=tuple(_order),
    prefix=_category_cycles_prefix,
)


# --- basket shape ------------------------------------------------------------------------------
def _basket_lines(src: dict[str, ir.Table]) -> ir.Table:
    return _lines(src)


d = Declare("basket")
d.count(
    "items_365d",
    "items bought in the last 365 days",
    int_sum_of(lambda e: e.quantity, 365),
    window=365,
)
d(
    "qty_per_line_365d",
    "mean quantity per order line, last 365 days",
    mean_of(lambda e: e.quantity, 365),
    window=365,
)
d(
    "unit_price_365d",
    "mean unit price of items bought, last 365 days",
    mean_of(lambda e: e.unit_price, 365),
    window=365,
)
d(
    "fragile_share_365d",
    "share of order lines that were fragile, last 365 days",
    mean_of(lambda e: e.fragile.ifelse(1.0, 0.0), 365),
    window=365,
)
d.count(
    "distinct_skus_365d",
    "distinct products bought in the last 365 days",
    distinct_of(lambda e: e.sku, 365),
    window=365,
)
d.count(
    "distinct_categories_365d",
    "distinct categories bought in the last 365 days",
    distinct_of(lambda e: e.category, 365),
    window=365,
)
d(
    "weight_per_order_365d",
    "mean kg per order, last 365 days",
    ratio_of(
        sum_of(lambda e: e.weight_kg * e.quantity, 365),
        distinct_of(lambda e: e.order_id, 365),
    ),
    window=365,
)
d(
    "lines_per_order_365d",
    "mean order lines per order, last 365 days",
    ratio_of(count_of(365), distinct_of(lambda e: e.order_id, 365)),
    window=365,
)
BASKET = Family(
    "basket", ("orders", "order_items", "products"), "basket shape", _basket_lines, d.take()
)


# --- time habits ---------------------------------------------------------------------------------
d = Declare("time_habits")
for i, day in enumerate(WEEKDAYS):
    d(
        f"orders_{day}_share_365d",
        f"share of orders in the last 365 days placed on {day}",
        mean_of(lambda e, i=i: (weekday_of(e) == i).ifelse(1.0, 0.0), 365),
        window=365,
    )
declare_time_shares(d, "orders", 365)
d(
    "order_hour_mean_365d",
    "mean hour of day of orders (UTC), last 365 days",
    mean_of(hour_of, 365),
    window=365,
)
TIME_HABITS = Family(
    "time_habits", ("orders",), "when in the week and day a shopper orders", _orders, d.take()
)


# --- btyd: BG/NBD fitted per snapshot ----------------------------------------------------------
# Daily units: frequency x = order days - 1 (repeat purchase days), T = days since the first
# order, recency t_x = T - days since the last order. At each snapshot the model is fitted on
# that snapshot's population (every shopper with an order before it), whose rows only hold
# history before it, so the values are point-in-time by construction.
BTYD_MIN_SHOPPERS = 50  # fewer shoppers at a snapshot: no fit, the snapshot's values stay null
BTYD_PENALIZER = 0.001  # lifetimes-style L2 on the parameters; keeps sparse fits finite
BTYD_HORIZONS = (7, 30, 90)
BTYD_FEATURES = (
    Feature(
        "btyd_p_alive",
        "btyd",
        None,
        "float64",
        "BG/NBD probability the shopper is still active (fitted on this snapshot's shoppers)",
    ),
    *(
        Feature(
            f"btyd_orders_{h}d",
            "btyd",
            None,  # a horizon after the snapshot, not a window before it
            "float64",
            f"BG/NBD expected order days in the next {h} days",
        )
        for h in BTYD_HORIZONS
    ),
    Feature(
        "btyd_days_to_next",
        "btyd",
        None,
        "float64",
        "BG/NBD expected days between orders for an active shopper: (alpha + T) / (r + x)",
    ),
)


def _btyd(users: pa.Table) -> dict[str, np.ndarray]:
    """The BG/NBD quantities per row; null for shoppers without an order, and for every row of
    a snapshot whose shoppers are too few, never repeated, or give no optimum."""
    n = users.num_rows
    out = {f.name: np.full(n, np.nan) for f in BTYD_FEATURES}
    snap = users.column("snapshot_at").cast(pa.int64()).to_numpy()
    days = users.column("order_days_all").to_numpy(zero_copy_only=False).astype(float)
    first = users.column("days_since_first_order").to_numpy(zero_copy_only=False).astype(float)
    last = users.column("days_since_last_order").to_numpy(zero_copy_only=False).astype(float)
    known = np.isfinite(first) & np.isfinite(last) & (days >= 1)
    x, big_t = days - 1.0, first
    tx = np.clip(first - last, 0.0, None)

    def fit(s) -> tuple[np.ndarray, object] | None:
        idx = np.flatnonzero(known & (snap == s))
        if len(idx) < BTYD_MIN_SHOPPERS:
            return None
        try:
            params = fit_bgnbd(x[idx], tx[idx], big_t[idx], penalizer=BTYD_PENALIZER).params
        except BTYDFitError:
            return None
        return idx, params

    # Each snapshot's fit is its own (the same whatever else is built); they run side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        fits = list(pool.map(fit, np.unique(snap[known])))
    for done in fits:
        if done is None:
            continue
        idx, params = done
        out["btyd_p_alive"][idx] = p_alive(params, x[idx], tx[idx], big_t[idx])
        for h in BTYD_HORIZONS:
            out[f"btyd_orders_{h}d"][idx] = expected_orders(params, h, x[idx], tx[idx], big_t[idx])
        out["btyd_days_to_next"][idx] = days_to_next(params, x[idx], big_t[idx])
    return out


BTYD = Family(
    "btyd",
    ("orders",),
    "BG/NBD (buy-till-you-die) quantities, fitted per snapshot on the history before it",
    None,
    built_features=BTYD_FEATURES,
    fitted=_btyd,
)
