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
    (tmp_path / "log.json").write_text("x")
    with pytest.raises(OrderLogError, match=r"expected a \.csv, \.parquet or \.xlsx"):
        read_order_log(tmp_path / "log.json")


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


# --- a shop's real files: encodings, delimiters, workbooks, broken files ----------------------


def _as_pandas_reads_it(result, frame: pd.DataFrame, customer: str, at: str, amount: str):
    """The imported orders equal a straightforward pandas reading of the same file."""
    want = pd.DataFrame(
        {
            "user_id": frame[customer].astype(str).str.strip(),
            "ordered_at": pd.to_datetime(frame[at].astype(str), utc=True, format="ISO8601"),
            "amount": frame[amount].astype(float),
        }
    ).sort_values("ordered_at", kind="stable")
    got = result.orders.to_pandas()[["user_id", "ordered_at", "amount"]]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False
    )


CHINESE = (
    "客户;下单时间;金额\n张伟;2025-03-02 10:15:00;19.90\n"
    "李娜;2025-03-01 08:00:00;5\n王芳;2025-04-01;7.25\n"
)
LATIN = (
    "Kunde\tDatum\tBetrag\nMüller\t2025-03-02\t19.90\nGarçon\t2025-03-01\t5\n"
    "José Nuñez\t2025-04-01\t7.25\nZoë à Côté\t2025-04-02\t1\n"
)


def test_utf8_with_a_bom_keeps_the_first_column_name(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV, encoding="utf-8-sig")
    for encoding in (None, "utf-8"):
        log = read_order_log(path, encoding=encoding)
        assert log.frame.columns[0] == "Kunden Nr"
        result = import_orders(log, **ODD)
        _as_pandas_reads_it(
            result, pd.read_csv(path, encoding="utf-8-sig"), *list(ODD.values())[:3]
        )


@pytest.mark.parametrize("options", [{}, {"encoding": "gbk", "delimiter": ";"}])
def test_gbk_with_semicolons_is_detected_or_chosen(tmp_path, options):
    path = tmp_path / "log.csv"
    path.write_bytes(CHINESE.encode("gbk"))
    result = import_orders(
        read_order_log(path, **options), customer="客户", timestamp="下单时间", amount="金额"
    )
    assert sorted(result.orders.column("user_id").to_pylist()) == ["张伟", "李娜", "王芳"]
    frame = pd.read_csv(path, encoding="gbk", sep=";")
    _as_pandas_reads_it(result, frame, "客户", "下单时间", "金额")


@pytest.mark.parametrize("options", [{}, {"encoding": "latin-1", "delimiter": "\\t"}])
def test_latin1_with_tabs_is_detected_or_chosen(tmp_path, options):
    path = tmp_path / "log.csv"
    path.write_bytes(LATIN.encode("latin-1"))
    result = import_orders(
        read_order_log(path, **options), customer="Kunde", timestamp="Datum", amount="Betrag"
    )
    assert "José Nuñez" in result.orders.column("user_id").to_pylist()
    frame = pd.read_csv(path, encoding="latin-1", sep="\t")
    _as_pandas_reads_it(result, frame, "Kunde", "Datum", "Betrag")


def test_text_not_in_the_chosen_encoding_names_the_file_line_and_encoding(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(LATIN.encode("latin-1"))
    with pytest.raises(OrderLogError) as exc:
        read_order_log(path, encoding="utf-8")
    message = str(exc.value)
    assert message.startswith(f"{path}: line 2 is not valid utf-8 text")
    assert "--encoding" in message and "\n" not in message
    with pytest.raises(OrderLogError, match="--encoding 'klingon': unknown encoding"):
        read_order_log(path, encoding="klingon")


def test_options_that_do_not_fit_the_file_are_refused(tmp_path):
    path = _csv(tmp_path, GOOD_CSV)
    with pytest.raises(OrderLogError, match="--delimiter ';;': expected one character"):
        read_order_log(path, delimiter=";;")
    with pytest.raises(OrderLogError, match="--sheet applies to Excel files only"):
        read_order_log(path, sheet="Orders")


def _workbook(tmp_path: Path) -> Path:
    path = tmp_path / "log.xlsx"
    first = pd.DataFrame(
        {
            "id": [101, 7, 101],
            "at": ["2025-03-02 10:15:00", "2025-03-01", "2025-04-01"],
            "paid": [19.9, 5.0, 7.25],
        }
    )
    second = pd.DataFrame({"id": [3, 4], "at": ["2025-01-01", "2025-01-02"], "paid": [1, -2]})
    with pd.ExcelWriter(path) as book:
        first.to_excel(book, sheet_name="Orders", index=False)
        second.to_excel(book, sheet_name="Returns", index=False)
    return path


def test_xlsx_first_sheet_or_a_named_one_with_excel_rows_and_ids_as_written(tmp_path):
    path = _workbook(tmp_path)
    cols = dict(customer="id", timestamp="at", amount="paid")
    result = import_orders(read_order_log(path), **cols)
    assert result.orders.column("user_id").to_pylist() == ["7", "101", "101"]
    _as_pandas_reads_it(result, pd.read_excel(path, dtype={"id": str}), "id", "at", "paid")
    result = import_orders(read_order_log(path, sheet="Returns"), **cols, on_bad_rows="skip")
    # The header is Excel's row 1, so the second record is row 3.
    assert [(b.position, b.column) for b in result.bad_rows] == [(3, "paid")]
    assert result.unit == "row" and result.orders.column("user_id").to_pylist() == ["3"]
    with pytest.raises(OrderLogError, match=r"--sheet 'Sales': no such sheet.*'Orders', 'Returns'"):
        read_order_log(path, sheet="Sales")


def test_an_empty_csv_is_named_not_a_traceback(tmp_path):
    for text in ("", "\n\n"):
        with pytest.raises(OrderLogError, match=f"^{tmp_path / 'log.csv'}: the file is empty$"):
            read_order_log(_csv(tmp_path, text))


def test_a_zero_byte_or_corrupt_parquet_is_named(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_bytes(b"")
    with pytest.raises(OrderLogError, match=f"^{path}: the file is empty$"):
        read_order_log(path)
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(OrderLogError) as exc:
        read_order_log(path)
    assert str(exc.value).startswith(f"{path}: not a readable Parquet file")
    assert "\n" not in str(exc.value)


def test_a_bad_timestamp_format_names_the_option(tmp_path):
    log = read_order_log(_csv(tmp_path, GOOD_CSV))
    with pytest.raises(OrderLogError, match="^--timestamp-format '%Q': 'Q' is a bad directive"):
        import_orders(log, **ODD, timestamp_format="%Q")


def test_records_with_the_wrong_field_count_are_named_by_their_line(tmp_path):
    text = (
        "who,when,paid,n\nA,2025-01-02,3.5,1\nB,2025-01-03,2,1,extra\n\n"
        "C,2025-01-04\nD,2025-01-05,1,1\n"
    )
    log = read_order_log(_csv(tmp_path, text))
    cols = dict(customer="who", timestamp="when", amount="paid")
    with pytest.raises(OrderLogError) as exc:
        import_orders(log, **cols)
    message = str(exc.value)
    assert "  line 3: 5 fields, the header has 4\n" in message
    assert message.endswith("  line 5: 2 fields, the header has 4")
    result = import_orders(log, **cols, on_bad_rows="skip")
    assert result.orders.column("user_id").to_pylist() == ["A", "D"]
    assert [(b.position, b.column) for b in result.bad_rows] == [(3, ""), (5, "")]


def test_parquet_integer_ids_with_a_null_stay_as_written(tmp_path):
    frame = pd.DataFrame(
        {
            "cust": pd.array([101, None, 7], dtype="Int64"),
            "at": ["2025-01-01", "2025-01-02", "2025-01-03"],
            "value": [1.5, 2.5, 3.0],
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    log = read_order_log(tmp_path / "log.parquet")
    result = import_orders(log, customer="cust", timestamp="at", amount="value", on_bad_rows="skip")
    assert result.orders.column("user_id").to_pylist() == ["101", "7"]
    assert [(b.position, b.reason) for b in result.bad_rows] == [(2, "empty customer id")]
    expected = pd.read_parquet(tmp_path / "log.parquet").dropna(subset=["cust"])
    _as_pandas_reads_it(result, expected.astype({"cust": "string"}), "cust", "at", "value")
