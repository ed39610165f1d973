"""The order-log importer: any column names in, a valid `orders` table out, bad rows by line."""

from __future__ import annotations

import re
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
K-3,2025-03-03,inf,1
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
    assert "line 4: Betrag (EUR) = 'inf': not a finite number" in message
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
    # A negative amount is a refund, not a bad row.
    assert result.bad_rows == [] and result.returns.column("refund").to_pylist() == [2.0]
    assert result.unit == "row" and result.orders.column("user_id").to_pylist() == ["3"]
    second = pd.DataFrame({"id": [3, 4], "at": ["2025-01-01", "2025-01-02"], "paid": [1, "x"]})
    with pd.ExcelWriter(path, mode="a") as book:
        second.to_excel(book, sheet_name="Typo", index=False)
    result = import_orders(read_order_log(path, sheet="Typo"), **cols, on_bad_rows="skip")
    # The header is Excel's row 1, so the second record is row 3.
    assert [(b.position, b.column) for b in result.bad_rows] == [(3, "paid")]
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


# --- timestamps: zones, the data's end, forms ------------------------------------------------

COLS = dict(customer="who", timestamp="when", amount="paid")
NOW = pd.Timestamp("2025-12-31 12:00", tz="UTC")


def _import(tmp_path: Path, rows: list[str], header: str = "who,when,paid", **options):
    log = read_order_log(_csv(tmp_path, "\n".join([header, *rows]) + "\n"))
    return import_orders(log, **{**COLS, "now": NOW, **options})


def _times(result) -> list[str]:
    return [t.isoformat() for t in result.orders.column("ordered_at").to_pylist()]


def test_timestamps_without_a_zone_are_read_in_the_timezone_and_offsets_kept(tmp_path):
    rows = ["A,2025-01-15 10:00,1", "B,2025-07-15 10:00,1", "C,2025-07-16T10:00+05:00,1"]
    assert _times(_import(tmp_path, rows)) == [
        "2025-01-15T10:00:00+00:00",
        "2025-07-15T10:00:00+00:00",
        "2025-07-16T05:00:00+00:00",
    ]
    result = _import(tmp_path, rows, timezone="Europe/Berlin")
    # Winter and summer time, and an explicit offset left as written.
    assert _times(result) == [
        "2025-01-15T09:00:00+00:00",
        "2025-07-15T08:00:00+00:00",
        "2025-07-16T05:00:00+00:00",
    ]
    assert result.timezone == "Europe/Berlin"


def test_clock_changes_in_the_timezone(tmp_path):
    rows = ["A,2025-03-30 02:30,1", "B,2025-10-26 02:30,1"]
    result = _import(tmp_path, rows, timezone="Europe/Berlin", on_bad_rows="skip")
    # 02:30 never happened on 30 March; on 26 October it happened twice: the first is taken.
    assert [(b.position, b.reason) for b in result.bad_rows] == [
        (2, "does not exist in Europe/Berlin (the clocks went forward)")
    ]
    assert _times(result) == ["2025-10-26T00:30:00+00:00"]


def test_an_unknown_timezone_names_the_option(tmp_path):
    with pytest.raises(OrderLogError, match="^--timezone 'Mars/Olympus': not a known IANA"):
        _import(tmp_path, ["A,2025-01-15,1"], timezone="Mars/Olympus")


def test_timestamps_after_as_of_or_in_the_future_are_bad_rows(tmp_path):
    rows = ["A,2025-06-30 23:59,1", "B,2025-07-01 00:00,1", "C,2025-12-31 13:00,1"]
    result = _import(tmp_path, [*rows, "D,2925-01-01,1"], on_bad_rows="skip")
    # A year pandas cannot hold is a typo in the future, not "not a timestamp".
    assert [(b.position, b.reason) for b in result.bad_rows] == [
        (4, "in the future"),
        (5, "in the future"),
    ]
    result = _import(tmp_path, rows, as_of="2025-06-30", on_bad_rows="skip")
    # The --as-of day is whole: its last minute is in, the next day is out.
    assert [(b.position, b.reason) for b in result.bad_rows] == [
        (3, "after --as-of 2025-06-30"),
        (4, "after --as-of 2025-06-30"),
    ]
    assert result.orders.column("user_id").to_pylist() == ["A"]
    # --as-of is a day in --timezone: 23:59 in Berlin on 30 June is still that day.
    late = _import(tmp_path, ["A,2025-06-30T23:30+02:00,1"], as_of="2025-06-30", timezone="UTC")
    assert late.bad_rows == []


@pytest.mark.parametrize(
    ("as_of", "said"),
    [("30.06.2025", "--as-of 30.06.2025: not a date (YYYY-MM-DD)"), ("2999-01-01", "after today")],
)
def test_a_bad_as_of_names_the_option(tmp_path, as_of, said):
    with pytest.raises(OrderLogError, match=re.escape(said)):
        _import(tmp_path, ["A,2025-01-15,1"], as_of=as_of)


def test_a_day_above_12_proves_the_form(tmp_path):
    rows = ["A,02/03/2025 10:15,1", "B,31/01/2025 08:00,1"]
    result = _import(tmp_path, rows)
    assert (result.timestamp_form, result.form_inferred) == ("%d/%m/%Y %H:%M", True)
    assert _times(result) == ["2025-01-31T08:00:00+00:00", "2025-03-02T10:15:00+00:00"]
    # The UCI Online Retail log's form: month first, no leading zeros.
    result = _import(tmp_path, ["A,12/1/2010 8:26,1", "B,12/13/2010 9:01,1"])
    assert result.timestamp_form == "%m/%d/%Y %H:%M"
    assert _times(result)[0] == "2010-12-01T08:26:00+00:00"
    result = _import(tmp_path, ["A,31.12.2024,1", "B,01.02.2025 10:00:05,1"])
    assert result.timestamp_form == "%d.%m.%Y [%H:%M[:%S]]"


def test_an_inferred_form_still_refuses_what_it_cannot_read(tmp_path):
    rows = ["A,31/01/2025,1", "B,30/02/2025,1", "C,soon,1"]
    result = _import(tmp_path, rows, on_bad_rows="skip")
    assert [b.position for b in result.bad_rows] == [3, 4]
    assert "the form %d/%m/%Y inferred" in result.bad_rows[0].reason
    assert "--timestamp-format" in result.bad_rows[0].reason


def test_dates_that_fit_two_forms_are_refused_naming_column_and_forms(tmp_path):
    with pytest.raises(OrderLogError) as exc:
        _import(tmp_path, ["A,02/03/2025,1", "B,04/05/2025,1"])
    message = str(exc.value)
    assert "column 'when'" in message and "%d/%m/%Y or as %m/%d/%Y" in message
    assert "--timestamp-format" in message
    result = _import(tmp_path, ["A,02/03/2025,1"], timestamp_format="%m/%d/%Y")
    assert _times(result) == ["2025-02-03T00:00:00+00:00"]


def test_a_column_mixing_date_forms_is_refused(tmp_path):
    with pytest.raises(OrderLogError) as exc:
        _import(tmp_path, ["A,31/01/2025,1", "B,01/31/2025,1"])
    message = str(exc.value)
    assert "column 'when' mixes date forms" in message
    assert "%d/%m/%Y does not read line 3 '01/31/2025'" in message
    assert "--timestamp-format" in message


def test_date_errors_name_the_option(tmp_path):
    result = _import(tmp_path, ["A,2025-01-02,1", "B,02.01.2025,1"], on_bad_rows="skip")
    assert "--timestamp-format" in result.bad_rows[0].reason
    given = _import(tmp_path, ["A,2025-01-02,1"], timestamp_format="%d.%m.%Y", on_bad_rows="skip")
    assert given.bad_rows[0].reason == "not a timestamp in --timestamp-format %d.%m.%Y"


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("inf", "not a finite number"),
        ("-inf", "not a finite number"),
        ("nan", "not a finite number"),
        ("NaN", "not a finite number"),
        ("1e999", "not a finite number"),
        ('"1,234.50"', "a thousands separator (',')"),
        ('"1.234,50"', "a thousands separator ('.')"),
        ("1 234", "a thousands separator (space)"),
        ('"1,234"', "',' is a thousands separator or a decimal comma"),
        ('"12,50"', "a decimal comma; pass --decimal-comma"),
        ("$12.50", "a currency symbol"),
        ("12.50 EUR", "a currency symbol"),
        ("€ 3", "a currency symbol"),
        ("twelve", "not a number"),
    ],
)
def test_amounts_that_are_not_plain_numbers_are_bad_rows(tmp_path, written, reason):
    result = _import(tmp_path, ["A,2025-01-02,1", f"B,2025-01-03,{written}"], on_bad_rows="skip")
    assert [(b.position, b.column) for b in result.bad_rows] == [(3, "paid")]
    assert result.bad_rows[0].reason.startswith(reason), result.bad_rows[0].reason


def test_decimal_comma_reads_european_numbers(tmp_path):
    rows = ["A;2025-01-02;12,50", "B;2025-01-03;-3,5", "C;2025-01-04;1.234,50", "D;2025-01-05;7.5"]
    result = _import(tmp_path, rows, header="who;when;paid", decimal_comma=True, on_bad_rows="skip")
    assert result.orders.column("amount").to_pylist() == [12.5]
    assert result.returns.column("refund").to_pylist() == [3.5]
    # A thousands separator is refused even so; a decimal point is not read as one.
    assert [(b.position, b.reason[:23]) for b in result.bad_rows] == [
        (4, "a thousands separator ("),
        (5, "a '.' in a number read "),
    ]


def test_decimal_comma_is_for_csv_files(tmp_path):
    pd.DataFrame({"who": ["a"], "when": ["2025-01-01"], "paid": [1.5]}).to_parquet(
        tmp_path / "log.parquet"
    )
    log = read_order_log(tmp_path / "log.parquet")
    with pytest.raises(OrderLogError, match="^--decimal-comma applies to CSV files only"):
        import_orders(log, **COLS, decimal_comma=True)


def test_quantities_are_whole_numbers_and_never_zero(tmp_path):
    rows = ["A,2025-01-02,1,2", "B,2025-01-03,1,1.5", "C,2025-01-04,1,0", "D,2025-01-05,1,inf"]
    result = _import(tmp_path, rows, header="who,when,paid,n", quantity="n", on_bad_rows="skip")
    assert [(b.position, b.reason) for b in result.bad_rows] == [
        (3, "not a whole number"),
        (4, "quantity 0: neither an order nor a return"),
        (5, "not a finite number"),
    ]
    assert result.orders.column("n_items").to_pylist() == [2]


# --- duplicates and order ids -----------------------------------------------------------------


def test_exact_duplicates_fail_or_are_left_out(tmp_path):
    rows = ["A,2025-01-02,12.5", "B,2025-01-03,1", "A,2025-01-02,12.50", "A,2025-01-02,12.5"]
    with pytest.raises(OrderLogError) as exc:
        _import(tmp_path, rows)
    message = str(exc.value)
    assert message.startswith("2 exact duplicate line(s); nothing was written")
    assert "  line 4: repeats line 2 exactly\n  line 5: repeats line 2 exactly" in message
    result = _import(tmp_path, rows, on_bad_rows="skip")
    assert [b.position for b in result.duplicates] == [4, 5] and result.bad_rows == []
    assert result.orders.column("user_id").to_pylist() == ["A", "B"]


def test_order_ids_are_kept_as_written_and_lines_that_disagree_are_bad_rows(tmp_path):
    header = "id,who,when,paid"
    rows = ["007,A,2025-01-02,1", "7,A,2025-01-02,1", "8,B,2025-01-03,1", "8,B,2025-01-04,2"]
    said = "line 5: when = '2025-01-04': differs from line 4, the first line of order 8"
    with pytest.raises(OrderLogError, match=re.escape(said)):
        _import(tmp_path, rows, header=header, order_id="id")
    result = _import(tmp_path, rows, header=header, order_id="id", on_bad_rows="skip")
    # The order is as its first line says; the line that disagrees is left out.
    assert [b.position for b in result.bad_rows] == [5]
    assert result.order_ids is not None
    assert result.order_ids.to_pylist() == [
        {"order_id": 1, "shop_order_id": "007"},
        {"order_id": 2, "shop_order_id": "7"},
        {"order_id": 3, "shop_order_id": "8"},
    ]
    assert result.orders.column("amount").to_pylist() == [1.0, 1.0, 1.0]


# --- refunds and cancellations ----------------------------------------------------------------


def test_refunds_and_cancellations_become_returns_linked_to_their_orders(tmp_path):
    header = "invoice,who,when,paid,n"
    rows = [
        "536365,17850,2025-01-02 08:26,15.30,6",
        "C536365,17850,2025-01-03 09:00,15.30,6",  # cancelled: links to 536365
        "536366,13047,2025-01-04 10:00,-4.50,1",  # a refund with its own id: no order to link
        "536367,13047,2025-01-05 11:00,2.50,-2",  # a negative quantity: a refund
        "C999,12583,2025-01-06 12:00,-1,-1",  # cancelled, its order not in the log
    ]
    result = _import(
        tmp_path, rows, header=header, quantity="n", order_id="invoice", cancelled_prefix="C"
    )
    assert result.orders.num_rows == 1 and result.bad_rows == []
    assert result.returns.to_pydict() | {"requested_at": None} == {
        "return_id": [1, 2, 3, 4],
        "order_id": [1, None, None, None],
        "user_id": ["17850", "13047", "13047", "12583"],
        "sku": [None, None, None, None],
        "quantity": [6, 1, 2, 1],
        "requested_at": None,
        "reason": ["cancelled", "refund", "refund", "cancelled"],
        "refund": [15.3, 4.5, 2.5, 1.0],
    }
    tables = {"orders": result.orders.to_pandas(), "returns": result.returns.to_pandas()}
    assert validate_tables(tables, end=NOW) == []


@pytest.mark.parametrize(
    ("cancelled", "marks", "orders", "bad"),
    [
        ("gone", ["no", "YES", ""], ["A", "C"], []),
        ("gone", ["0", "1", "maybe"], ["A"], [4]),
        ("gone=Cancelled,void", ["done", "VOID", "cancelled"], ["A"], []),
    ],
)
def test_a_cancelled_column_marks_returns(tmp_path, cancelled, marks, orders, bad):
    rows = [
        f"{who},2025-01-0{i + 2},{i + 1},{mark}"
        for i, (who, mark) in enumerate(zip("ABC", marks, strict=True))
    ]
    result = _import(
        tmp_path, rows, header="who,when,paid,gone", cancelled=cancelled, on_bad_rows="skip"
    )
    assert [b.position for b in result.bad_rows] == bad
    assert result.orders.column("user_id").to_pylist() == orders
    returned = sorted(set("ABC") - set(orders) - {"ABC"[p - 2] for p in bad})
    assert result.returns.column("user_id").to_pylist() == returned
    assert set(result.returns.column("reason").to_pylist()) == {"cancelled"}


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"cancelled_prefix": "C"}, "--cancelled-prefix marks order ids: name their column"),
        ({"cancelled": "state"}, "--cancelled 'state': no such column"),
        ({"cancelled": "who="}, "--cancelled 'who=': name the values"),
        ({"order_id": "nr"}, "--order-id 'nr': no such column"),
    ],
)
def test_bad_return_options_name_the_option(tmp_path, options, said):
    with pytest.raises(OrderLogError, match=re.escape(said)):
        _import(tmp_path, ["A,2025-01-02,1"], **options)


# --- the step: what lands in the raw folder ---------------------------------------------------


def test_the_import_writes_returns_ids_and_the_as_of_end(tmp_path):
    from cadence.flows.steps.ingest import import_order_log
    from cadence.ingest import read_manifest, validate_dir

    path = _csv(
        tmp_path,
        "nr,who,when,paid\n1,A,2025-01-02,1\nC1,A,2025-01-03,1\n2,B,2025-01-04,2\n",
    )
    out = tmp_path / "raw"
    done = import_order_log(
        path,
        out,
        **COLS,
        order_id="nr",
        cancelled_prefix="C",
        as_of="2025-01-31",
        timezone="Asia/Shanghai",
    )
    assert (done.orders, done.returns, done.timezone) == (2, {"cancelled": 1}, "Asia/Shanghai")
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "order_ids.parquet",
        "orders.parquet",
        "returns.parquet",
    ]
    manifest = read_manifest(out)
    assert manifest is not None and manifest.tables == {"orders": 2, "returns": 1}
    # The end of 31 January in Shanghai.
    assert manifest.end.isoformat() == "2025-01-31T16:00:00+00:00"
    assert manifest.options is not None and manifest.options["as_of"] == "2025-01-31"
    assert validate_dir(out) == []
    with pytest.raises(OrderLogError, match="^--timezone 'nowhere'"):
        import_order_log(path, tmp_path / "other", **COLS, timezone="nowhere")
    assert not (tmp_path / "other").exists()


def test_parquet_timestamps_with_a_zone_keep_it_and_naive_ones_take_the_timezone(tmp_path):
    frame = pd.DataFrame(
        {
            "who": ["a", "b"],
            "naive": pd.to_datetime(["2025-01-02 10:00", "2025-01-03 10:00"]),
            "aware": pd.to_datetime(["2025-01-02 10:00", "2025-01-03 10:00"]).tz_localize(
                "America/New_York"
            ),
            "paid": [1.0, 2.0],
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    log = read_order_log(tmp_path / "log.parquet")
    cols = dict(customer="who", amount="paid", timezone="Asia/Tokyo")
    naive = import_orders(log, **cols, timestamp="naive")
    assert _times(naive)[0] == "2025-01-02T01:00:00+00:00"
    aware = import_orders(log, **cols, timestamp="aware")
    assert _times(aware)[0] == "2025-01-02T15:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "encoding", "read"),
    [
        ("who,when,paid\n李,2025-01-02,1\n", "gbk", "李"),  # GBK's 李 is cp1252's Àî too
        ("who,when,paid\nMüller,2025-01-02,1\n", "cp1252", "Müller"),  # ül is GBK too
    ],
)
def test_a_legacy_encoding_is_told_by_how_its_bytes_fall(tmp_path, text, encoding, read):
    path = tmp_path / "log.csv"
    path.write_bytes(text.encode(encoding))
    assert read_order_log(path).frame["who"].tolist() == [read]


def test_a_legacy_encoding_that_cannot_be_told_is_refused_not_guessed(tmp_path):
    path = tmp_path / "log.csv"
    # GBK reads "üß" as one character too, and the pair is not the GB2312 kind either.
    path.write_bytes("who,when,paid\nGrüße,2025-01-02,1\n".encode("cp1252"))
    with pytest.raises(OrderLogError, match="cannot tell the text encoding.*--encoding"):
        read_order_log(path)
    assert read_order_log(path, encoding="cp1252").frame["who"].tolist() == ["Grüße"]
