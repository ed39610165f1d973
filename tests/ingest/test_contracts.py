"""Every contract check fires on a deliberately broken table and names table and column."""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cadence.ingest import validate_dir, validate_tables
from tests.ingest.conftest import END

pytestmark = pytest.mark.data


def test_a_valid_world_has_no_violations(frames, raw_dir):
    assert validate_tables(frames, end=END) == []
    assert validate_dir(raw_dir) == []


def _set(table, column, value, rows=slice(0, 3)):
    def breaker(frames):
        frame = frames[table]
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[rows], column] = value

    return breaker


def _dup_key(table, columns):
    def breaker(frames):
        frame = frames[table]
        frame.loc[frame.index[1], columns] = frame.loc[frame.index[0], columns].to_numpy()

    return breaker


def _scale(table, column, factor):
    def breaker(frames):
        frames[table][column] = frames[table][column] * factor

    return breaker


def _shipped_over(frames):
    inv = frames["inventory"]
    inv.loc[inv.index[:2], "shipped"] = inv.loc[inv.index[:2], "on_hand"] + 1


def _redeemed_early(frames):
    c = frames["coupons"]
    used = c.redeemed_at.notna()
    c.loc[used, "redeemed_at"] = c.loc[used, "issued_at"] - pd.Timedelta(hours=1)


def _after_end(frames):
    frames["orders"].loc[frames["orders"].index[0], "ordered_at"] = END + pd.Timedelta(days=3)


def _drop_column(frames):
    frames["sessions"] = frames["sessions"].drop(columns=["dwell_seconds"])


def _drop_orders(frames):
    del frames["orders"]


BREAKAGES = {
    "enum city tier": (_set("users", "city_tier", 7), "users", "city_tier", "isin"),
    "enum category": (_set("products", "category", "weapons"), "products", "category", "isin"),
    "enum channel": (_set("orders", "channel", "fax"), "orders", "channel", "isin"),
    "negative amount": (_set("orders", "amount", -5.0), "orders", "amount", "greater_than"),
    "zero pages": (_set("sessions", "pages", 0), "sessions", "pages", "greater_than"),
    "latitude": (_set("users", "lat", 123.0), "users", "lat", "in_range"),
    "discount rate": (
        _set("coupons", "discount_rate", 1.5),
        "coupons",
        "discount_rate",
        "in_range",
    ),
    "null user": (_set("orders", "user_id", None), "orders", "user_id", "null"),
    "duplicate order": (_dup_key("orders", ["order_id"]), "orders", "order_id", "duplicate"),
    "duplicate stock row": (
        _dup_key("inventory", ["date", "node_id", "sku"]),
        "inventory",
        "date, node_id, sku",
        "duplicate",
    ),
    "billed weight": (
        _scale("shipments", "billed_weight_kg", 0.5),
        "shipments",
        "",
        "billed_weight_kg >= max",
    ),
    "shipped beyond stock": (_shipped_over, "inventory", "", "shipped <= on_hand"),
    "redeemed before issued": (_redeemed_early, "coupons", "", "redeemed_at >= issued_at"),
    "unknown sku": (
        _set("order_items", "sku", "SKU-9999"),
        "order_items",
        "sku",
        "not found in products.sku",
    ),
    "unknown user": (
        _set("sessions", "user_id", "nobody"),
        "sessions",
        "user_id",
        "not found in users.user_id",
    ),
    "after the end": (_after_end, "orders", "ordered_at", "after the data's end"),
    "consent purpose": (_set("consents", "purpose", "lottery"), "consents", "purpose", "isin"),
    "consent of nobody": (
        _set("consents", "user_id", "nobody"),
        "consents",
        "user_id",
        "not found in users.user_id",
    ),
    "missing column": (_drop_column, "sessions", "dwell_seconds", "missing column"),
    "missing orders": (_drop_orders, "orders", "", "required table is missing"),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_each_check_fires_and_names_table_and_column(frames, case):
    breaker, table, column, check = BREAKAGES[case]
    breaker(frames)
    found = validate_tables(frames, end=END)
    hits = [v for v in found if v.table == table and v.column == column and check in v.check]
    assert hits, f"{case}: expected {table}.{column} {check!r}, got {[str(v) for v in found]}"
    assert all(v.count >= 1 for v in hits)
    assert table in str(hits[0]) and (column in str(hits[0]))


def test_wrong_column_type_is_named_from_the_parquet_schema(raw_dir):
    orders = pq.read_table(raw_dir / "orders.parquet")
    amount = orders.column("amount").cast(pa.string())
    orders = orders.set_column(orders.schema.get_field_index("amount"), "amount", amount)
    pq.write_table(orders, raw_dir / "orders.parquet")
    found = validate_dir(raw_dir)
    assert any(
        v.table == "orders" and v.column == "amount" and "expected double" in v.check for v in found
    ), [str(v) for v in found]


def test_validation_changes_nothing(raw_dir):
    def snapshot():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in raw_dir.iterdir()}

    frame = pq.read_table(raw_dir / "users.parquet").to_pandas()
    frame.loc[0, "city_tier"] = 9
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), raw_dir / "users.parquet")
    before = snapshot()
    assert validate_dir(raw_dir)
    assert snapshot() == before


def test_an_unreadable_manifest_is_a_violation_not_a_crash(raw_dir):
    (raw_dir / "manifest.json").write_text("{not json")
    found = validate_dir(raw_dir)
    assert [(v.table, v.column) for v in found] == [("manifest.json", "end")]


@pytest.mark.parametrize("content", [b"", b"PAR1 not parquet"])
def test_an_unreadable_table_is_named_by_its_file_once(raw_dir, content):
    path = raw_dir / "orders.parquet"
    path.write_bytes(content)
    found = [v for v in validate_dir(raw_dir) if v.table == "orders"]
    # Named once, by its path; not also reported missing.
    assert len(found) == 1, [str(v) for v in found]
    assert found[0].file == str(path)
    assert str(found[0]).startswith(f"{path}: unreadable Parquet file (")


def test_a_mistyped_required_table_is_not_also_missing(raw_dir):
    orders = pq.read_table(raw_dir / "orders.parquet")
    pq.write_table(orders.drop_columns(["amount"]), raw_dir / "orders.parquet")
    found = [str(v) for v in validate_dir(raw_dir) if v.table == "orders"]
    assert found == ["orders.amount: missing column fails for 1 row(s)"]
