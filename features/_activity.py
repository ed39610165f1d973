"""Activity families: browsing, carts, search and coupons."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from cadence.features._catalogue import (
    DAY,
    SCALE,
    Declare,
    Family,
    Feature,
    count_of,
    day_of,
    days,
    declare_time_shares,
    distinct_of,
    exact_sum,
    fixed,
    int_sum_of,
    latest_age,
    mean_of,
    ratio,
    sum_of,
)
from cadence.features._prefix import NULL_TIME, US, PerSnapshot


def _sessions(src: dict[str, ir.Table]) -> ir.Table:
    s = src["sessions"]
    ev = s.select(
        "user_id", "pages", "dwell_seconds", "category", "categories_viewed", ts=s.started_at
    )
    if "order_items" not in src or "products" not in src:
        return ev.mutate(first_bought=ibis.null("timestamp('UTC')"))
    # When the shopper first bought each category, to tell views of known categories apart.
    o, i, p = src["orders"], src["order_items"], src["products"]
    lines = i.join(o, "order_id").join(p, "sku")
    first = lines.group_by(["user_id", "category"]).aggregate(first_bought=lines.ordered_at.min())
    joined = ev.left_join(first, ["user_id", "category"])
    return joined.select(ev, first.first_bought)


d = Declare("sessions")
for w in (7, 14, 30, 90):
    d.count(f"sessions_{w}d", f"sessions in the last {w} days", count_of(w), window=w)
for w in (7, 30, 90):
    d.count(
        f"pages_{w}d",
        f"pages viewed in the last {w} days",
        int_sum_of(lambda e: e.pages, w),
        window=w,
    )
for w in (7, 30):
    d.total(
        f"dwell_minutes_{w}d",
        f"minutes spent browsing in the last {w} days",
        sum_of(lambda e: e.dwell_seconds / 60.0, w),
        window=w,
    )
d(
    "pages_per_session_30d",
    "mean browse depth (pages per session), last 30 days",
    mean_of(lambda e: e.pages, 30),
    window=30,
)
d(
    "dwell_per_session_30d",
    "mean seconds per session, last 30 days",
    mean_of(lambda e: e.dwell_seconds, 30),
    window=30,
)
d("days_since_last_session", "days since the most recent session", latest_age())
d.count(
    "session_days_30d",
    "distinct days with a session in the last 30 days",
    distinct_of(day_of, 30),
    window=30,
)
d(
    "categories_per_session_30d",
    "mean categories viewed per session, last 30 days",
    mean_of(lambda e: e.categories_viewed, 30),
    window=30,
)
d.count(
    "distinct_categories_viewed_30d",
    "distinct main categories viewed in the last 30 days",
    distinct_of(lambda e: e.category, 30),
    window=30,
)
d.count(
    "sessions_bought_category_30d",
    "sessions in the last 30 days on a category the shopper had already bought",
    count_of(30, seen=lambda e: e.first_bought),
    window=30,
)
declare_time_shares(d, "sessions", 90)
_session_aggs = d.take()
d(
    "bought_category_share_30d",
    "share of last-30-day sessions on already bought categories",
    lambda a: ratio(a.sessions_bought_category_30d, a.sessions_30d),
    window=30,
)
SESSIONS = Family(
    "sessions",
    ("sessions",),
    "browsing: sessions, depth, dwell, what is viewed",
    _sessions,
    _session_aggs,
    d.take(),
)


def _floor0(x: ir.Value) -> ir.Value:
    return (x < 0).ifelse(0.0, x)


def _cart(src: dict[str, ir.Table]) -> ir.Table:
    c = src["cart_events"]
    return c.select("user_id", "event_id", "sku", "action", "quantity", ts=c.ts)


d = Declare("cart")
for w in (7, 30, 90):
    d.count(
        f"cart_adds_{w}d",
        f"items added to the cart in the last {w} days",
        count_of(w, lambda e: e.action == "add"),
        window=w,
    )
    d.count(
        f"cart_removes_{w}d",
        f"items removed from the cart in the last {w} days",
        count_of(w, lambda e: e.action == "remove"),
        window=w,
    )
for w in (30, 90):
    d.count(
        f"cart_purchases_{w}d",
        f"cart lines checked out in the last {w} days",
        count_of(w, lambda e: e.action == "purchase"),
        window=w,
    )
d(
    "days_since_cart_add",
    "days since the shopper last added an item to the cart",
    latest_age(lambda e: e.action == "add"),
)
_cart_aggs = d.take()
d(
    "cart_abandonment_30d",
    "1 - checkouts/adds over the last 30 days, floored at 0 (checkouts of older adds count)",
    lambda a: _floor0(1.0 - ratio(a.cart_purchases_30d, a.cart_adds_30d)),
    window=30,
)
CART = Family("cart", ("cart_events",), "cart activity", _cart, _cart_aggs, d.take())

CART_STATE_FEATURES = (
    Feature(
        "cart_open_items",
        "cart_state",
        None,
        "int64",
        "items in the cart at the snapshot (last action on the item was an add)",
        0,
    ),
    Feature(
        "cart_open_value",
        "cart_state",
        None,
        "float64",
        "value of the items in the cart at the snapshot",
        0.0,
    ),
    Feature(
        "cart_oldest_item_days",
        "cart_state",
        None,
        "float64",
        "days since the oldest item still in the cart was added",
    ),
)


def _cart_until(src: dict[str, ir.Table]) -> ir.Table:
    """Cart events, each with the time of its item's next event (`next_ts`; null: none yet).
    An item's last event before the snapshot says whether it sits in the cart, and each
    event holds until the item's next one (by time, then id)."""
    c = _cart(src)
    w = ibis.window(group_by=[c.user_id, c.sku], order_by=[c.ts, c.event_id])
    return c.mutate(next_ts=c.ts.lead().over(w))


def _priced(t: ir.Table, src: dict[str, ir.Table]) -> ir.Table:
    """`t` with each sku's `price` (null without a products table)."""
    if "products" not in src:
        return t.mutate(price=ibis.null("float64"))
    p = src["products"]
    return t.left_join(p, "sku").select(t, p.price)


def _cart_state(src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    # The last event before a snapshot is the one whose successor comes at or after it, or
    # that has none: two range joins that keep one row per item and snapshot, instead of
    # every event at every later snapshot.
    c = _cart_until(src)
    held = c.filter(c.next_ts.notnull())
    held = held.join(snaps, (held.ts < snaps.snapshot_at) & (held.next_ts >= snaps.snapshot_at))
    final = c.filter(c.next_ts.isnull())
    final = final.join(snaps, final.ts < snaps.snapshot_at)
    j = held.union(final)
    last = _priced(j.filter(j.action == "add"), src)
    age = days(last.snapshot_at, last.ts)
    out = last.group_by(["user_id", "snapshot_at"]).aggregate(
        cart_open_items=last.quantity.sum().cast("int64"),
        cart_open_value=exact_sum(last.price * last.quantity),
        cart_oldest_item_days=age.max(),
    )
    return out


def _cart_state_prefix(src: dict[str, ir.Table]):
    """`_cart_state` without the joins: each add holds its item in the cart from its time
    until the item's next event (found once per build); a snapshot's cart is the adds it
    falls inside, reduced per shopper in one pass over them."""
    c = _cart_until(src)
    adds = _priced(c.filter(c.action == "add"), src)
    ev = adds.select(
        "user_id", "ts", "next_ts", "quantity", value=fixed(adds.price * adds.quantity)
    ).to_pyarrow()
    g = PerSnapshot(ev, "user_id")
    ts, until = g.micros("ts"), g.micros("next_ts")
    ts_s = np.floor_divide(ts, US)
    quantity, no_quantity = g.numbers("quantity")
    value, no_value = g.numbers("value")

    def columns(rows: pa.Table) -> dict[str, pa.Array]:
        n = rows.num_rows
        items, worth, oldest = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n)
        has_items, has_worth, has = (np.zeros(n, dtype=bool) for _ in range(3))
        for s_us, r, block in g.snapshots(rows):
            held = (ts < s_us) & ((until == NULL_TIME) | (until >= s_us))
            mine = block >= 0
            b = block[mine]
            at = r[mine]
            if not len(b):
                continue
            has[at] = g.count(held)[b] > 0
            has_items[at] = g.count(held & ~no_quantity)[b] > 0
            items[at] = g.total(quantity, held)[b]
            has_worth[at] = g.count(held & ~no_value)[b] > 0
            worth[at] = g.total(value, held).astype(np.float64)[b] / SCALE
            age = (s_us // US - ts_s).astype(np.float64) / DAY
            oldest[at] = -g.least(-age, held)[b]
        return {
            "cart_open_items": pa.array(items, mask=~(has & has_items)),
            "cart_open_value": pa.array(worth, mask=~(has & has_worth)),
            "cart_oldest_item_days": pa.array(oldest, mask=~has),
        }

    return columns


CART_STATE = Family(
    "cart_state",
    ("cart_events",),
    "what sits in the cart at the snapshot",
    None,
    build=_cart_state,
    built_features=CART_STATE_FEATURES,
    prefix=_cart_state_prefix,
)


def _searches(src: dict[str, ir.Table]) -> ir.Table:
    s = src["searches"]
    return s.select("user_id", "query", "category", ts=s.ts)


d = Declare("search")
for w in (7, 30, 90):
    d.count(f"searches_{w}d", f"searches in the last {w} days", count_of(w), window=w)
d.count(
    "distinct_queries_30d",
    "distinct search queries in the last 30 days",
    distinct_of(lambda e: e.query, 30),
    window=30,
)
d("days_since_last_search", "days since the most recent search", latest_age())
d(
    "vague_search_share_30d",
    "share of last-30-day searches that matched no category",
    mean_of(lambda e: e.category.isnull().ifelse(1.0, 0.0), 30),
    window=30,
)
SEARCH = Family("search", ("searches",), "search activity", _searches, d.take())


def _coupons(src: dict[str, ir.Table]) -> ir.Table:
    c = src["coupons"]
    return c.select("user_id", "redeemed_at", "expires_at", ts=c.issued_at)


def _redeemed_age(j: ir.Table) -> ir.Value:
    """Days since the coupon was redeemed, null if not redeemed before the snapshot."""
    before = j.redeemed_at.notnull() & (j.redeemed_at < j.snapshot_at)
    age = days(j.snapshot_at, j.redeemed_at)
    return before.ifelse(age, ibis.null("float64"))


def _open(j: ir.Table) -> ir.BooleanValue:
    unused = j.redeemed_at.isnull() | (j.redeemed_at >= j.snapshot_at)
    return (j.expires_at > j.snapshot_at) & unused


d = Declare("coupons")
for w in (30, 90, 365):
    d.count(
        f"coupons_issued_{w}d",
        f"coupons received in the last {w} days",
        count_of(w),
        window=w,
    )
    d.count(
        f"coupons_redeemed_{w}d",
        f"coupons redeemed in the last {w} days",
        lambda j, w=w: (_redeemed_age(j) <= w).ifelse(1, 0).sum().cast("int64"),
        window=w,
    )
d(
    "days_since_redemption",
    "days since the shopper last redeemed a coupon",
    lambda j: _redeemed_age(j).min(),
)
d.count(
    "coupons_open",
    "coupons held and still valid at the snapshot",
    lambda j: _open(j).ifelse(1, 0).sum().cast("int64"),
)
d(
    "coupon_days_left",
    "days until the soonest-expiring open coupon expires",
    lambda j: (
        _open(j)
        .ifelse(
            days(j.expires_at, j.snapshot_at),
            ibis.null("float64"),
        )
        .min()
    ),
)
_coupon_aggs = d.take()
d(
    "coupon_redemption_rate_365d",
    "coupons redeemed over coupons received, last 365 days",
    lambda a: ratio(a.coupons_redeemed_365d, a.coupons_issued_365d),
    window=365,
)


def _coupons_prefix(src: dict[str, ir.Table]):
    """The coupon features that depend on the snapshot (redeemed, open, days left), as the
    join computes them: over coupons issued before the snapshot, null for a shopper with none.
    The coupons are read once; the returned function answers a batch of rows."""
    c = src["coupons"]
    ev = c.select("user_id", "issued_at", "redeemed_at", "expires_at").to_pyarrow()
    g = PerSnapshot(ev, "user_id")
    issued, redeemed, expires = (g.micros(n) for n in ("issued_at", "redeemed_at", "expires_at"))
    redeemed_s = np.floor_divide(redeemed, US)
    expires_s = np.floor_divide(expires, US)
    return lambda rows: _coupon_state(g, issued, redeemed, expires, redeemed_s, expires_s, rows)


def _coupon_state(g: PerSnapshot, issued, redeemed, expires, redeemed_s, expires_s, rows):
    n = rows.num_rows
    out = {name: (np.zeros(n), np.zeros(n, dtype=bool)) for name in _COUPON_STATE}
    for s_us, r, block in g.snapshots(rows):
        s_s = s_us // US
        held = issued < s_us
        used = held & (redeemed != NULL_TIME) & (redeemed < s_us)
        used_age = (s_s - redeemed_s).astype(np.float64) / DAY
        valid = expires != NULL_TIME
        open_ = held & valid & (expires > s_us) & ((redeemed == NULL_TIME) | (redeemed >= s_us))
        days_left = (expires_s - s_s).astype(np.float64) / DAY
        has = np.zeros(len(r), dtype=bool)
        if len(g.starts):
            has = (block >= 0) & (g.count(held)[block] > 0)
        per_block = {
            **{f"coupons_redeemed_{w}d": g.count(used & (used_age <= w)) for w in (30, 90, 365)},
            "coupons_open": g.count(open_),
            "days_since_redemption": g.least(used_age, used),
            "coupon_days_left": g.least(days_left, open_),
        }
        for name, values in per_block.items():
            v = values[block] if len(values) else np.zeros(len(r))
            out[name][0][r] = v
            out[name][1][r] = has & np.isfinite(v)
    return {
        name: pa.array(
            out[name][0].astype(np.int64) if name.startswith("coupons_") else out[name][0],
            type=pa.int64() if name.startswith("coupons_") else pa.float64(),
            mask=~out[name][1],
        )
        for name in _COUPON_STATE
    }


_COUPON_STATE = (
    "coupons_redeemed_30d",
    "coupons_redeemed_90d",
    "coupons_redeemed_365d",
    "days_since_redemption",
    "coupons_open",
    "coupon_days_left",
)
COUPONS = Family(
    "coupons",
    ("coupons",),
    "coupons received, held and redeemed",
    _coupons,
    _coupon_aggs,
    d.take(),
    prefix=_coupons_prefix,
)
