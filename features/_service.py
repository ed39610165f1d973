"""Service families: returns, fulfilment experience, service contacts, profile, moves, trends."""

from __future__ import annotations

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cadence.features._catalogue import (
    DAY,
    Declare,
    Family,
    Feature,
    count_of,
    days,
    int_sum_of,
    latest_age,
    mean_of,
    ratio,
    sum_of,
)
from cadence.features._prefix import US

MEMBERSHIPS = ("basic", "plus", "vip")
DEVICES = ("ios", "android", "web", "mini_program")
REGIONS = ("north", "northeast", "east", "south", "central", "southwest", "northwest")
CONTACT_REASONS = ("late_delivery", "damaged", "return", "account", "other")


def _returns(src: dict[str, ir.Table]) -> ir.Table:
    r = src["returns"]
    return r.select("user_id", "quantity", "refund", ts=r.requested_at)


d = Declare("returns")
for w in (90, 365):
    d.count(
        f"returns_{w}d",
        f"return requests in the last {w} days",
        count_of(w),
        window=w,
    )
d.count(
    "returned_items_365d",
    "items returned in the last 365 days",
    int_sum_of(lambda e: e.quantity, 365),
    window=365,
)
d.total(
    "refund_365d",
    "amount refunded in the last 365 days",
    sum_of(lambda e: e.refund, 365),
    window=365,
)
d("days_since_last_return", "days since the most recent return request", latest_age())
RETURNS = Family("returns", ("returns",), "returns", _returns, d.take())


def _deliveries(src: dict[str, ir.Table]) -> ir.Table:
    s, o = src["shipments"], src["orders"]
    j = s.join(o, "order_id").filter(s.delivered_at.notnull())
    # What the shopper experiences is known on delivery: that is the event's time.
    took = days(j.delivered_at, j.ordered_at)
    return j.select("user_id", "late", "damaged", "cost", ts=j.delivered_at, delivery_days=took)


d = Declare("fulfilment")
for w in (90, 365):
    d.count(
        f"deliveries_{w}d",
        f"parcels delivered in the last {w} days",
        count_of(w),
        window=w,
    )
    d(
        f"delivery_days_{w}d",
        f"mean days from order to delivery, last {w} days",
        mean_of(lambda e: e.delivery_days, w),
        window=w,
    )
    d.count(
        f"late_{w}d",
        f"late deliveries in the last {w} days",
        count_of(w, lambda e: e.late),
        window=w,
    )
d.count(
    "damaged_365d",
    "damaged deliveries in the last 365 days",
    count_of(365, lambda e: e.damaged),
    window=365,
)
d(
    "shipping_cost_365d",
    "mean shipping cost of the shopper's parcels, last 365 days",
    mean_of(lambda e: e.cost, 365),
    window=365,
)
d(
    "days_since_late_delivery",
    "days since the shopper last received a late parcel",
    latest_age(lambda e: e.late),
)
_fulfil_aggs = d.take()
d(
    "late_rate_365d",
    "share of last-365-day deliveries that were late",
    lambda a: ratio(a.late_365d, a.deliveries_365d),
    window=365,
)
FULFILMENT = Family(
    "fulfilment",
    ("shipments", "orders"),
    "delivery experience",
    _deliveries,
    _fulfil_aggs,
    d.take(),
)


def _contacts(src: dict[str, ir.Table]) -> ir.Table:
    c = src["service_contacts"]
    return c.select("user_id", "reason", ts=c.ts)


d = Declare("contacts")
for w in (30, 90, 365):
    d.count(
        f"contacts_{w}d",
        f"service contacts in the last {w} days",
        count_of(w),
        window=w,
    )
for reason in CONTACT_REASONS:
    d.count(
        f"contacts_{reason}_365d",
        f"service contacts about {reason}, last 365 days",
        count_of(365, lambda e, reason=reason: e.reason == reason),
        window=365,
    )
d("days_since_contact", "days since the most recent service contact", latest_age())
CONTACTS = Family("contacts", ("service_contacts",), "service contacts", _contacts, d.take())


def _moves(src: dict[str, ir.Table]) -> ir.Table:
    a = src["address_changes"]
    return a.select("user_id", ts=a.changed_at)


d = Declare("moves")
d.count(
    "address_changes_365d",
    "address changes in the last 365 days",
    count_of(365),
    window=365,
)
d("days_since_address_change", "days since the shopper last changed address", latest_age())
MOVES = Family("moves", ("address_changes",), "address changes", _moves, d.take())

PROFILE_FEATURES = (
    Feature("tenure_days", "profile", None, "float64", "days since sign-up"),
    Feature("city_tier", "profile", None, "int64", "city tier of the home address (1-5)"),
    *(
        Feature(f"membership_{m}", "profile", None, "int64", f"membership level is {m}", 0)
        for m in MEMBERSHIPS
    ),
    *(
        Feature(f"device_{dv}", "profile", None, "int64", f"main device is {dv}", 0)
        for dv in DEVICES
    ),
    *(Feature(f"region_{r}", "profile", None, "int64", f"home region is {r}", 0) for r in REGIONS),
)


def _profile(src: dict[str, ir.Table], snaps: ir.Table) -> ir.Table:
    # Sensitive attributes (gender, age band) are never selected here or anywhere else.
    u = src["users"].select("user_id", "signup_at", "city_tier", "membership", "device", "region")
    j = u.join(snaps, u.signup_at < snaps.snapshot_at)
    cols = {
        "tenure_days": days(j.snapshot_at, j.signup_at),
        "city_tier": j.city_tier.cast("int64"),
    }
    cols.update(
        {f"membership_{m}": (j.membership == m).ifelse(1, 0).cast("int64") for m in MEMBERSHIPS}
    )
    cols.update({f"device_{dv}": (j.device == dv).ifelse(1, 0).cast("int64") for dv in DEVICES})
    cols.update({f"region_{r}": (j.region == r).ifelse(1, 0).cast("int64") for r in REGIONS})
    return j.select("user_id", "snapshot_at", **cols)


def _profile_prefix(src: dict[str, ir.Table]):
    """`_profile` without the join: each row's shopper looked up in the users table (every row
    of the population signed up before its snapshot, so the join has each of them)."""
    u = src["users"]
    users = u.select("user_id", "signup_at", "city_tier", "membership", "device", "region")
    users = users.to_pyarrow()
    return lambda rows: _profile_rows(users, rows)


def _profile_rows(users: pa.Table, rows: pa.Table) -> dict[str, pa.Array]:
    at = pc.index_in(rows.column("user_id"), value_set=users.column("user_id"))
    mine = users.take(at)
    signup = mine.column("signup_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    snap = rows.column("snapshot_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    seconds = np.floor_divide(snap.to_numpy(), US) - np.floor_divide(
        pc.fill_null(signup, 0).to_numpy(), US
    )
    out = {
        "tenure_days": pa.array(
            seconds.astype(np.float64) / DAY, mask=signup.is_null().to_numpy(zero_copy_only=False)
        ),
        "city_tier": mine.column("city_tier").cast(pa.int64()).combine_chunks(),
    }
    for column, values in (("membership", MEMBERSHIPS), ("device", DEVICES), ("region", REGIONS)):
        col = mine.column(column)
        for v in values:
            hit = pc.fill_null(pc.equal(col, v), False)
            out[f"{column}_{v}"] = hit.cast(pa.int64()).combine_chunks()
    return out


PROFILE = Family(
    "profile",
    ("users",),
    "tenure, membership, device, where the shopper lives",
    None,
    build=_profile,
    built_features=PROFILE_FEATURES,
    prefix=_profile_prefix,
)

d = Declare("trends")
for a, b in (
    ("orders_30d", "orders_90d"),
    ("spend_30d", "spend_90d"),
    ("sessions_30d", "sessions_90d"),
    ("cart_adds_30d", "cart_adds_90d"),
    ("searches_30d", "searches_90d"),
    ("sessions_7d", "sessions_30d"),
):
    wa, wb = (int(x.rsplit("_", 1)[1][:-1]) for x in (a, b))
    d(
        f"trend_{a}_over_{b}",
        f"{a} over {b} ({wa}/{wb} = steady)",
        lambda r, a=a, b=b: ratio(r[a], r[b]),
        needs=(a, b),
    )
d(
    "return_rate_365d",
    "items returned over items bought, last 365 days",
    lambda r: ratio(r.returned_items_365d, r.items_365d),
    window=365,
    needs=("returned_items_365d", "items_365d"),
)
TRENDS = Family("trends", (), "activity trends and rates across families", None, derived=d.take())
