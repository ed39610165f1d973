"""The order-log importer: any column names in, a valid `orders` table out, bad rows by line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cadence.ingest import OrderLogError, import_orders, read_order_log, staged_dir, validate_tables

pytestmark = pytest.mark.unit

ODD = dict(customer="Kunden Nr", timestamp="Bestell-Datum", amount="Betrag (EUR)", quantity="Stück")
GOOD_CSV = """Kunden Nr,Bestell-Datum,Betrag (EUR),Stück,Filiale
 K-17 ,2025-03-02 10:15:00,19.90,2,Berlin
K-03,2025-03-01T08:00:00+01:00,5,1,Köln
K-17,2025-04-01,7.25,1,Berlin
"""
BAD_CSV = """Kunden Nr,Bestell-Datum,Betrag (EUR),Stück
K-1,2025-03-02 10:15:00,19.90,1
K-2,not a date,5.00,1
K-3,2025-03-03,-4.00,1
K-4,2025-03-04,,1
,2025-03-05,3.00,1
K-6,2025-03-06,12.5,1
"""


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_odd_column_names_round_trips(tmp_path):
    result = import_orders(read_order_log(_csv(tmp_path, GOOD_CSV)), **ODD)
    orders = result.orders.to_pandas()
    assert result.bad_rows == []
    # Sorted by time and numbered 1..n; ids stripped; offsets converted to UTC.
    assert orders.order_id.tolist() == [1, 2, 3]
    assert orders.user_id.tolist() == ["K-03", "K-17", "K-17"]
    assert orders.ordered_at.iloc[0] == pd.Timestamp("2025-03-01 07:00", tz="UTC")
    assert orders.amount.tolist() == [5.0, 19.9, 7.25]
    assert orders.n_items.tolist() == [1, 2, 1]
    assert validate_tables({"orders": orders}) == []


def test_parquet_round_trips_with_rows_counted_from_one(tmp_path):
    frame = pd.DataFrame(
        {
            "cust": ["a", "b", ""],
            "at": pd.to_datetime(["2025-01-02", "2025-01-01", "2025-01-03"]),
            "value": [1.5, 2.5, 3.0],
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    log = read_order_log(tmp_path / "log.parquet")
    result = import_orders(log, customer="cust", timestamp="at", amount="value", on_bad_rows="skip")
    assert result.orders.column("user_id").to_pylist() == ["b", "a"]
    assert [(b.position, b.reason) for b in result.bad_rows] == [(3, "empty customer id")]
    assert result.unit == "row"


def test_bad_rows_fail_with_their_line_numbers(tmp_path):
    log = read_order_log(_csv(tmp_path, BAD_CSV))
    with pytest.raises(OrderLogError) as exc:
        import_orders(log, **{k: v for k, v in ODD.items()})
    message = str(exc.value)
    assert "line 3: Bestell-Datum = 'not a date': not a timestamp in ISO 8601" in message
    assert "line 4: Betrag (EUR) = '-4.00': negative amount" in message
    assert "line 5: Betrag (EUR) = '': missing amount" in message
    assert "line 6: Kunden Nr = '': empty customer id" in message
    assert "line 2" not in message and "line 7" not in message


def test_bad_rows_can_be_skipped(tmp_path):
    log = read_order_log(_csv(tmp_path, BAD_CSV))
    result = import_orders(log, **ODD, on_bad_rows="skip")
    assert result.orders.column("user_id").to_pylist() == ["K-1", "K-6"]
    assert sorted({b.position for b in result.bad_rows}) == [3, 4, 5, 6]


def test_a_missing_column_is_named_with_the_ones_available(tmp_path):
    log = read_order_log(_csv(tmp_path, GOOD_CSV))
    with pytest.raises(OrderLogError, match="--amount 'Total': no such column.*Betrag"):
        import_orders(log, customer="Kunden Nr", timestamp="Bestell-Datum", amount="Total")


def test_other_file_kinds_are_refused(tmp_path):
    (tmp_path / "log.xlsx").write_text("x")
    with pytest.raises(OrderLogError, match="expected a .csv or .parquet"):
        read_order_log(tmp_path / "log.xlsx")


def test_staged_dir_keeps_the_old_folder_when_the_write_fails(tmp_path):
    target = tmp_path / "raw"
    target.mkdir()
    (target / "orders.parquet").write_text("previous")
    with pytest.raises(RuntimeError), staged_dir(target) as tmp:
        (tmp / "orders.parquet").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "orders.parquet").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]
    with staged_dir(target) as tmp:
        (tmp / "orders.parquet").write_text("new")
    assert (target / "orders.parquet").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_timestamps_are_iso_unless_a_format_is_given(tmp_path):
    text = "who,when,paid\nA,02.03.2025,3.5\n\nB,2025-03-04,1\n"
    log = read_order_log(_csv(tmp_path, text))
    result = import_orders(log, customer="who", timestamp="when", amount="paid", on_bad_rows="skip")
    # 02.03.2025 is ambiguous: refused, not guessed; the blank line 3 is passed over.
    assert [(b.position, b.column) for b in result.bad_rows] == [(2, "when")]
    assert "ISO 8601" in result.bad_rows[0].reason
    text = "who,when,paid\nA,02.03.2025,3.5\n"
    log = read_order_log(_csv(tmp_path, text))
    result = import_orders(
        log, customer="who", timestamp="when", amount="paid", timestamp_format="%d.%m.%Y"
    )
    assert result.orders.column("ordered_at")[0].as_py().isoformat() == "2025-03-02T00:00:00+00:00"


def test_staged_folders_are_ordinary_folders(tmp_path):
    with staged_dir(tmp_path / "raw") as tmp:
        (tmp / "x").write_text("1")
    assert (tmp_path / "raw").stat().st_mode & 0o055 == 0o055
