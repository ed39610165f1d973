"""Data contracts: one pandera schema per raw table, built from the table definitions.

Types are checked on the Arrow schema (`type_problems`), before pandas blurs them (nullable
booleans become objects); the pandera schemas check values: nulls, domains, ranges, keys and
the rows' own consistency. Checks across tables (foreign keys, the data's end) are in
`_validate.py`.
"""

from __future__ import annotations

import functools

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow

from cadence.ingest import _tables as T

VOLUMETRIC_DIVISOR = 6000.0

_DOMAINS: dict[tuple[str, str], tuple] = {
    ("users", "city_tier"): (1, 2, 3, 4, 5),
    ("users", "membership"): T.MEMBERSHIPS,
    ("users", "device"): T.DEVICES,
    ("users", "gender"): T.GENDERS,
    ("users", "age_band"): T.AGE_BANDS,
    ("products", "category"): T.CATEGORIES,
    ("nodes", "kind"): T.NODE_KINDS,
    ("sessions", "device"): T.DEVICES,
    ("sessions", "category"): T.CATEGORIES,
    ("cart_events", "action"): T.CART_ACTIONS,
    ("searches", "category"): T.CATEGORIES,
    ("orders", "channel"): T.CHANNELS,
    ("shipments", "zone"): T.ZONES,
    ("returns", "reason"): T.RETURN_REASONS + T.IMPORTED_RETURN_REASONS,
    ("address_changes", "city_tier"): (1, 2, 3, 4, 5),
    ("service_contacts", "channel"): T.CONTACT_CHANNELS,
    ("service_contacts", "reason"): T.CONTACT_REASONS,
    ("consents", "purpose"): T.CONSENT_PURPOSES,
    ("offers", "incentive"): T.INCENTIVES,
    ("offers", "response"): T.OFFER_RESPONSES,
}

_GE0 = pa.Check.ge(0)
_GT0 = pa.Check.gt(0)
_GE1 = pa.Check.ge(1)
_RANGES: dict[tuple[str, str], list[pa.Check]] = {
    ("offers", "discount_rate"): [pa.Check.in_range(0, 1)],
    ("users", "lat"): [pa.Check.in_range(-90, 90)],
    ("users", "lon"): [pa.Check.in_range(-180, 180)],
    ("nodes", "lat"): [pa.Check.in_range(-90, 90)],
    ("nodes", "lon"): [pa.Check.in_range(-180, 180)],
    ("address_changes", "lat"): [pa.Check.in_range(-90, 90)],
    ("address_changes", "lon"): [pa.Check.in_range(-180, 180)],
    ("products", "price"): [_GT0],
    ("products", "weight_kg"): [_GT0],
    ("products", "volume_cm3"): [_GT0],
    ("nodes", "daily_capacity"): [_GT0],
    ("inventory", "on_hand"): [_GE0],
    ("inventory", "received"): [_GE0],
    ("inventory", "shipped"): [_GE0],
    ("sessions", "pages"): [_GE1],
    ("sessions", "dwell_seconds"): [_GT0],
    ("sessions", "categories_viewed"): [_GE1],
    ("cart_events", "quantity"): [_GE1],
    ("searches", "results"): [_GE0],
    ("coupons", "discount_rate"): [pa.Check.in_range(0, 1)],
    ("orders", "n_items"): [_GE1],
    ("orders", "amount"): [_GE0],
    ("orders", "discount"): [_GE0],
    ("order_items", "line"): [_GE1],
    ("order_items", "quantity"): [_GE1],
    ("order_items", "unit_price"): [_GE0],
    ("shipments", "distance_km"): [_GE0],
    ("shipments", "actual_weight_kg"): [_GT0],
    ("shipments", "volume_cm3"): [_GT0],
    ("shipments", "billed_weight_kg"): [_GT0],
    ("shipments", "cost"): [_GE0],
    ("returns", "quantity"): [_GE1],
    ("returns", "refund"): [_GE0],
}


def _later(a: str, b: str) -> pa.Check:
    """Row check: column `a` is not before column `b` (nulls pass)."""

    def check(df: pd.DataFrame) -> pd.Series:
        return df[a].isna() | df[b].isna() | (df[a] >= df[b])

    return pa.Check(check, name=f"{a} >= {b}")


def _billed(df: pd.DataFrame) -> pd.Series:
    # At least the larger of actual and volumetric weight; carriers may round up from there.
    need = df[["actual_weight_kg"]].assign(v=df.volume_cm3 / VOLUMETRIC_DIVISOR).max(axis=1)
    return df.billed_weight_kg >= need - 1e-9 * need.clip(lower=1)


_ROW_CHECKS: dict[str, list[pa.Check]] = {
    "inventory": [pa.Check(lambda df: df.shipped <= df.on_hand, name="shipped <= on_hand")],
    "coupons": [_later("expires_at", "issued_at"), _later("redeemed_at", "issued_at")],
    "shipments": [
        _later("delivered_at", "shipped_at"),
        pa.Check(_billed, name="billed_weight_kg >= max(actual_weight_kg, volume_cm3 / 6000)"),
    ],
}

# Row checks span several columns; violations name them all instead of each column.
ROW_CHECKS = frozenset(c.name for checks in _ROW_CHECKS.values() for c in checks)

# The Arrow type families a column may arrive in; a narrower integer is fine, a string is not.
_KINDS = {
    "string": (pa_arrow.types.is_string, pa_arrow.types.is_large_string),
    "int": (pa_arrow.types.is_integer,),
    "float": (pa_arrow.types.is_floating, pa_arrow.types.is_integer),
    "bool": (pa_arrow.types.is_boolean,),
    "timestamp": (pa_arrow.types.is_timestamp,),
    "date": (pa_arrow.types.is_date,),
}


def _kind(t: pa_arrow.DataType) -> str:
    for kind, tests in _KINDS.items():
        if tests[0](t):
            return kind
    return str(t)


def type_problems(table: str, schema: pa_arrow.Schema) -> list[tuple[str, str]]:
    """(column, problem) for missing columns and columns of the wrong type family."""
    out = []
    for field in T.SCHEMAS[table]:
        if field.name not in schema.names:
            out.append((field.name, "missing column"))
            continue
        got = schema.field(field.name).type
        want = _kind(field.type)
        if not any(test(got) for test in _KINDS[want]):
            out.append((field.name, f"type {got}, expected {field.type}"))
        elif want == "timestamp" and got.tz is None:
            out.append((field.name, f"type {got}, expected a UTC timestamp {field.type}"))
    return out


@functools.cache
def contract(table: str) -> pa.DataFrameSchema:
    """The value contract of one raw table (types are checked by `type_problems`)."""
    nullable = set(T.NULLABLE.get(table, ()))
    keys = T.KEYS[table]
    columns = {}
    for field in T.SCHEMAS[table]:
        checks = list(_RANGES.get((table, field.name), []))
        domain = _DOMAINS.get((table, field.name))
        if domain is not None:
            checks.append(pa.Check.isin(domain))
        columns[field.name] = pa.Column(
            None,
            checks=checks,
            nullable=field.name in nullable,
            unique=len(keys) == 1 and keys[0] == field.name,
            required=True,
        )
    return pa.DataFrameSchema(
        columns,
        checks=_ROW_CHECKS.get(table, []),
        unique=list(keys) if len(keys) > 1 else None,
        name=table,
        strict=False,
    )
