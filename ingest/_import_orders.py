"""Bringing a shop's own order log (any column names) in as a valid `orders` table."""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cadence.ingest._tables import SCHEMAS
from cadence.ingest._values import (
    ISO,
    OrderLogError,
    as_of_end,
    check_format,
    parse_numbers,
    parse_timestamps,
    zone,
)

__all__ = ["BadRow", "ImportResult", "OrderLog", "OrderLogError", "import_orders", "read_order_log"]

OnBadRows = Literal["fail", "skip"]

_KINDS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet", ".xlsx": "Excel"}
_HIGH_RUN = re.compile(rb"[\x80-\xff]+")
_GB2312 = re.compile(rb"(?:[\xa1-\xf7][\xa1-\xfe])+")  # the common Chinese characters


@dataclass(frozen=True)
class BadRow:
    position: int  # line in a CSV (the header is line 1), row in Parquet (from 1) or Excel (from 2)
    column: str  # "" when the whole record is at fault (a CSV line with the wrong field count)
    value: str
    reason: str

    def describe(self, unit: str) -> str:
        """`line 4: amount = '-4': negative amount`, or `line 7: 5 fields, the header has 4`."""
        said = f"{self.column} = {self.value!r}: {self.reason}" if self.column else self.reason
        return f"{unit} {self.position}: {said}"


@dataclass(frozen=True)
class OrderLog:
    frame: pd.DataFrame  # every column as text
    unit: str  # "line" or "row": how positions are counted for the user
    positions: np.ndarray  # each record's line or row, as the user counts them
    malformed: tuple[BadRow, ...] = ()  # CSV records that do not fit the header's columns
    kind: str = "CSV"  # CSV, Parquet or Excel


@dataclass(frozen=True)
class ImportResult:
    orders: pa.Table
    bad_rows: list[BadRow] = field(default_factory=list)
    unit: str = "line"
    returns: pa.Table = field(default_factory=SCHEMAS["returns"].empty_table)
    order_ids: pa.Table | None = None  # order_id -> the shop's own id, with --order-id
    duplicates: list[BadRow] = field(default_factory=list)  # exact repeats of earlier rows
    timezone: str = "UTC"  # the zone timestamps without one were read in
    timestamp_form: str = ISO
    form_inferred: bool = False  # the form was proven by the column, not given


def read_order_log(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> OrderLog:
    """Reads a CSV, Parquet or Excel (.xlsx) order log with every value as text, exactly as
    written, so parsing stays ours. A CSV's encoding and delimiter are detected unless given;
    a workbook's first sheet is read unless `sheet` names another."""
    path = Path(path)
    if not path.exists():
        raise OrderLogError(f"{path}: no such file")
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise OrderLogError(
            f"{path}: expected a .csv, .parquet or .xlsx file, got '{path.suffix or path.name}'"
        )
    for option, value, applies in (
        ("--encoding", encoding, "CSV"),
        ("--delimiter", delimiter, "CSV"),
        ("--sheet", sheet, "Excel"),
    ):
        if value is not None and kind != applies:
            raise OrderLogError(f"{path}: {option} applies to {applies} files only")
    try:
        if path.stat().st_size == 0:
            raise OrderLogError(f"{path}: the file is empty")
        if kind == "CSV":
            return _read_csv(path, path.read_bytes(), encoding, delimiter)
        if kind == "Excel":
            return _read_excel(path, sheet)
        return _read_parquet(path)
    except OSError as exc:
        raise OrderLogError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _decode(path: Path, raw: bytes, encoding: str | None) -> str:
    """The file's text in the given encoding, else UTF-8 (with or without BOM), else the
    detected legacy one; a BOM never reaches the first column's name."""
    if encoding is None:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return _detected(path, raw)
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise OrderLogError(
            f"--encoding {encoding!r}: unknown encoding; try utf-8, cp1252, latin-1 or gbk"
        ) from None
    try:
        return raw.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise OrderLogError(
            f"{path}: line {line} is not valid {encoding} text (byte 0x{raw[exc.start]:02x}); "
            "name the file's encoding with --encoding, e.g. --encoding cp1252"
        ) from None


def _detected(path: Path, raw: bytes) -> str:
    """A file that is not UTF-8, read as the legacy family it is: GB18030 (GBK's superset) or
    Western (cp1252, else Latin-1). When both can read it, the bytes decide: Chinese text in
    GBK is almost all pairs of bytes in the GB2312 range, and Western text has accented
    letters standing alone between plain ones. A file that shows neither is refused, not
    guessed (GBK's 李 is cp1252's Àî just as well). Any other encoding is named with
    --encoding."""
    readings: dict[str, str] = {}
    for codec in ("gb18030", "cp1252", "latin_1"):
        if codec == "latin_1" and "cp1252" in readings:
            break
        with contextlib.suppress(UnicodeDecodeError):
            readings[codec] = raw.decode(codec)
    if len(readings) == 1:
        return next(iter(readings.values()))
    head = raw[: raw.rfind(b"\n", 0, 1 << 20) + 1] or raw  # no GBK trail byte is a \n
    runs = _HIGH_RUN.findall(head)
    high = sum(map(len, runs))
    paired = sum(len(r) for r in runs if _GB2312.fullmatch(r))
    alone = sum(1 for r in runs if len(r) == 1)
    if paired >= 0.9 * high:
        return readings["gb18030"]
    if alone >= 0.5 * high:
        return readings.get("cp1252") or readings["latin_1"]
    western = "cp1252" if "cp1252" in readings else "latin_1"
    raise OrderLogError(
        f"{path}: cannot tell the text encoding: it reads as gb18030 and as {western}; "
        "name it with --encoding, e.g. --encoding gbk or --encoding cp1252"
    )


def _delimiter(text: str, delimiter: str | None) -> str:
    if delimiter is not None:
        sep = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(sep) != 1 or sep in '\r\n"':
            raise OrderLogError(
                f"--delimiter {delimiter!r}: expected one character, such as , or ; or \\t"
            )
        return sep
    sample = text[: 1 << 16]
    if len(text) > len(sample):
        sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _unique(names: list[str]) -> list[str]:
    """Repeated column names as pandas reads them: `a`, `a.1`, `a.2`."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(f"{name}.{n}" if n else name)
    return out


def _read_csv(path: Path, raw: bytes, encoding: str | None, delimiter: str | None) -> OrderLog:
    text = _decode(path, raw, encoding)
    if not text.strip():
        raise OrderLogError(f"{path}: the file is empty")
    sep = _delimiter(text, delimiter)
    # The csv module rather than pandas: a record with too many or too few fields is named by
    # its line, and lines are counted as a text editor counts them, quoted line breaks and all.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    header: list[str] | None = None
    rows: list[list[str]] = []
    positions: list[int] = []
    malformed: list[BadRow] = []
    start = 1
    try:
        for record in reader:
            if any(f.strip() for f in record):  # blank lines keep their number, nothing else
                if header is None:
                    header = record
                elif len(record) == len(header):
                    rows.append(record)
                    positions.append(start)
                else:
                    reason = f"{len(record)} fields, the header has {len(header)}"
                    malformed.append(BadRow(start, "", sep.join(record), reason))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise OrderLogError(f"{path}: line {reader.line_num}: {exc}") from None
    assert header is not None  # the text is not blank
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=object)
    return OrderLog(frame, "line", np.array(positions, dtype=np.int64), tuple(malformed), "CSV")


def _read_parquet(path: Path) -> OrderLog:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, ValueError) as exc:
        raise OrderLogError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    text = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        # Arrow's own cast: an integer column with nulls stays 101, not pandas' 101.0, and a
        # timestamp keeps its zone (a trailing Z) and any year, even past pandas' 2262.
        try:
            values = pc.cast(col, pa.string()).to_pylist()
        except pa.ArrowNotImplementedError:
            values = [None if v is None else str(v) for v in col.to_pylist()]
        text[name] = pd.Series(values, dtype=object)
    frame = pd.DataFrame(text, columns=table.column_names, dtype=object)
    return OrderLog(frame, "row", np.arange(1, table.num_rows + 1), kind="Parquet")


def _read_excel(path: Path, sheet: str | None) -> OrderLog:
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise OrderLogError(f"{path}: not a readable Excel workbook ({_first_line(exc)})") from None
    with book:
        names = [str(n) for n in book.sheet_names]
        if sheet is not None and sheet not in names:
            raise OrderLogError(f"{path}: --sheet {sheet!r}: no such sheet; it has {names}")
        # openpyxl gives whole-number cells as int, so an id 101 reads "101", not "101.0".
        frame = book.parse(sheet if sheet is not None else 0, dtype=str, keep_default_na=False)
    frame = frame.astype(object).where(frame.notna(), None)
    frame.columns = _unique([str(c) for c in frame.columns])
    # Excel's rows: the header is row 1.
    return OrderLog(frame, "row", np.arange(len(frame)) + 2, kind="Excel")


def check_options(
    *,
    timestamp_format: str | None = None,
    timezone: str = "UTC",
    as_of: str | dt.date | None = None,
    order_id: str | None = None,
    cancelled_prefix: str | None = None,
) -> tuple[ZoneInfo, tuple[dt.date, pd.Timestamp] | None]:
    """Checks the options that need no file, so a bad one fails before a large log is read:
    the zone, and the `--as-of` day with the instant it ends."""
    if timestamp_format is not None:
        check_format(timestamp_format)
    tz = zone(timezone)
    if cancelled_prefix is not None and order_id is None:
        raise OrderLogError("--cancelled-prefix marks order ids: name their column with --order-id")
    if cancelled_prefix is not None and not cancelled_prefix.strip():
        raise OrderLogError("--cancelled-prefix: give the text cancelled ids start with, e.g. C")
    return tz, None if as_of is None else as_of_end(as_of, tz)


def import_orders(
    log: OrderLog,
    *,
    customer: str,
    timestamp: str,
    amount: str,
    quantity: str | None = None,
    on_bad_rows: OnBadRows = "fail",
    timestamp_format: str | None = None,
    timezone: str = "UTC",
    as_of: str | dt.date | None = None,
    decimal_comma: bool = False,
    order_id: str | None = None,
    cancelled: str | None = None,
    cancelled_prefix: str | None = None,
    now: pd.Timestamp | None = None,
) -> ImportResult:
    """Parses the log into the `orders` and `returns` tables; bad rows fail the import or are
    skipped, and so do exact duplicates.

    Timestamps are ISO 8601 unless `timestamp_format` (strftime) says otherwise or the column
    proves one common day/month form (`_values.parse_timestamps`); those without a zone are
    wall times in `timezone`. Rows with a negative amount or quantity, or marked cancelled
    (`cancelled`: a yes/no column, or `COLUMN=VALUE[,VALUE]`; `cancelled_prefix`: order ids
    starting with it), are returns, linked to their order through `order_id` where it is found.
    """
    tz, end = check_options(
        timestamp_format=timestamp_format,
        timezone=timezone,
        as_of=as_of,
        order_id=order_id,
        cancelled_prefix=cancelled_prefix,
    )
    if decimal_comma and log.kind != "CSV":
        raise OrderLogError(
            f"--decimal-comma applies to CSV files only; {log.kind} files hold numbers as numbers"
        )
    frame = log.frame
    wanted = {"--customer": customer, "--timestamp": timestamp, "--amount": amount}
    for option, col in (("--quantity", quantity), ("--order-id", order_id)):
        if col is not None:
            wanted[option] = col
    for option, col in wanted.items():
        if col not in frame.columns:
            raise OrderLogError(
                f"{option} '{col}': no such column; the file has {list(frame.columns)}"
            )
    flag_col, flag_values = _cancelled_column(cancelled, list(frame.columns))
    now = pd.Timestamp.now(tz="UTC") if now is None else now

    # Blank rows are not orders; they keep their place in the numbering and are passed over
    # (the CSV reader has already passed over blank lines).
    blank = _blank_rows(frame) if log.kind != "CSV" else np.zeros(len(frame), dtype=bool)
    frame = frame[~blank].reset_index(drop=True)
    position = log.positions[~blank]
    unit = log.unit
    bad: list[BadRow] = list(log.malformed)
    is_bad = np.zeros(len(frame), dtype=bool)

    def text(col: str) -> pd.Series:
        return pd.Series(_trimmed(frame[col]), index=frame.index, dtype=object)

    def flag(mask: pd.Series, col: str, reason: str) -> None:
        hit = mask.to_numpy(dtype=bool, na_value=False)
        is_bad[hit] = True
        for pos, val in zip(position[hit], frame.loc[hit, col], strict=True):
            bad.append(BadRow(int(pos), col, "" if val is None else str(val), reason))

    def refuse(reasons: pd.Series, col: str) -> None:
        is_bad[reasons.index.to_numpy()] = True
        for i, reason in reasons.items():
            val = frame.at[i, col]
            bad.append(BadRow(int(position[i]), col, "" if val is None else str(val), reason))

    who = text(customer)
    flag(who == "", customer, "empty customer id")

    raw_ts = text(timestamp)
    flag(raw_ts == "", timestamp, "missing timestamp")
    ts = parse_timestamps(
        raw_ts,
        tz=tz,
        fmt=timestamp_format,
        column=timestamp,
        where=lambda i: f"{unit} {position[i]}",
    )
    refuse(ts.refused, timestamp)
    when = ts.utc.reindex(frame.index)
    late = pd.Series(False, index=frame.index)
    if end is not None:
        late = when >= end[1]
        flag(late, timestamp, f"after --as-of {end[0]}")
    flag(~late & (when > now), timestamp, "in the future")

    raw_amount = text(amount)
    flag(raw_amount == "", amount, "missing amount")
    number = parse_numbers(raw_amount, decimal_comma=decimal_comma)
    refuse(number.refused, amount)
    value = number.values.reindex(frame.index)

    if quantity is not None:
        raw_qty = text(quantity)
        flag(raw_qty == "", quantity, "missing quantity")
        counted = parse_numbers(raw_qty, decimal_comma=decimal_comma)
        refuse(counted.refused, quantity)
        qty = counted.values.reindex(frame.index)
        flag(qty.notna() & (qty != qty.round()), quantity, "not a whole number")
        flag(qty == 0, quantity, "quantity 0: neither an order nor a return")
        flag(qty.abs() > _MAX_ITEMS, quantity, f"more than {_MAX_ITEMS:,} items")
    else:
        qty = pd.Series(1.0, index=frame.index)

    marked = pd.Series(False, index=frame.index)
    if flag_col is not None:
        said = text(flag_col).str.casefold()
        if flag_values is None:
            marked = said.isin(_YES)
            flag(
                ~marked & ~said.isin(_NO), flag_col, "not a yes/no value (yes/no, true/false, 1/0)"
            )
        else:
            marked = said.isin(flag_values)
    link = oid = None
    if order_id is not None:
        oid = text(order_id)
        flag(oid == "", order_id, "empty order id")
        link = oid
        if cancelled_prefix is not None:
            prefixed = oid.str.startswith(cancelled_prefix)
            marked = marked | prefixed
            link = oid.where(~prefixed, oid.str.slice(len(cancelled_prefix)))

    is_return = ((value < 0) | (qty < 0) | marked).to_numpy()
    flag(
        pd.Series(is_return, index=frame.index) & (qty.abs() > _MAX_RETURNED),
        quantity or amount,
        f"more than {_MAX_RETURNED:,} items in one return",
    )

    keys = {"user": who, "at": when, "amount": value, "qty": qty, "marked": marked}
    if oid is not None:
        keys["id"] = oid
    duplicates, is_dup = _exact_duplicates(pd.DataFrame(keys)[~is_bad], position, unit)
    if oid is not None:
        live = ~is_bad & ~is_return
        live[is_dup] = False
        clashing, where_clash = _clashing_ids(oid[live], position, unit, order_id or "")
        bad += clashing
        is_bad[where_clash] = True

    bad.sort(key=lambda b: (b.position, b.column))
    if (bad or duplicates) and on_bad_rows == "fail":
        raise OrderLogError(_refusal(bad, duplicates, unit))
    keep = ~is_bad
    keep[is_dup] = False

    take = keep & ~is_return
    ordered = when[take].sort_values(kind="stable").index
    n = len(ordered)
    orders = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, n + 1), pa.int64()),
            pa.array(who[ordered].to_numpy(dtype=object), pa.string()),
            pa.array(when[ordered], SCHEMAS["orders"].field("ordered_at").type),
            pa.nulls(n, pa.string()),
            pa.array(qty[ordered].to_numpy(dtype=np.int64), pa.int32()),
            pa.array(value[ordered].to_numpy(dtype=float), pa.float64()),
            pa.array(np.zeros(n), pa.float64()),
        ],
        schema=SCHEMAS["orders"],
    )
    order_ids = linked = None
    if oid is not None and link is not None:
        shop = oid[ordered]
        order_ids = pa.table(
            {
                "order_id": pa.array(np.arange(1, n + 1), pa.int64()),
                "shop_order_id": pa.array(shop.to_numpy(dtype=object), pa.string()),
            }
        )
        linked = link.map(pd.Series(np.arange(1, n + 1), index=shop.to_numpy()))
    returns = _returns(keep & is_return, when, who, qty, value, marked, linked)
    return ImportResult(
        orders,
        bad,
        unit,
        returns=returns,
        order_ids=order_ids,
        duplicates=duplicates,
        timezone=tz.key,
        timestamp_form=ts.form,
        form_inferred=ts.inferred,
    )


def _trimmed(values: pd.Series) -> np.ndarray:
    """The column's text without surrounding spaces, "" for none (Arrow's kernels: a large
    log's columns are trimmed in milliseconds, not seconds)."""
    arr = pa.array(values.to_numpy(dtype=object), pa.string(), from_pandas=True)
    return pc.fill_null(pc.utf8_trim_whitespace(arr), "").to_numpy(zero_copy_only=False)


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    blank = np.ones(len(frame), dtype=bool)
    for col in frame.columns:
        blank &= _trimmed(frame[col]) == ""
    return blank


_YES = frozenset({"1", "true", "t", "yes", "y", "x", "cancelled", "canceled"})
_NO = frozenset({"", "0", "false", "f", "no", "n"})
_MAX_ITEMS = 2**31 - 1  # orders.n_items is int32
_MAX_RETURNED = 2**15 - 1  # returns.quantity is int16


def _cancelled_column(
    cancelled: str | None, columns: list[str]
) -> tuple[str | None, frozenset[str] | None]:
    """`--cancelled COLUMN` (a yes/no column) or `COLUMN=VALUE[,VALUE]` (rows holding one of
    the values, in any case, are cancelled): (column, values or None for yes/no)."""
    if cancelled is None:
        return None, None
    if cancelled in columns:
        return cancelled, None
    col, _, listed = cancelled.partition("=")
    values = frozenset(v.strip().casefold() for v in listed.split(",") if v.strip())
    if col not in columns:
        raise OrderLogError(f"--cancelled '{col}': no such column; the file has {columns}")
    if not values:
        raise OrderLogError(
            f"--cancelled {cancelled!r}: name the values that mark a cancellation, "
            f"e.g. --cancelled '{col}=cancelled,refunded'"
        )
    return col, values


def _exact_duplicates(
    keys: pd.DataFrame, position: np.ndarray, unit: str
) -> tuple[list[BadRow], np.ndarray]:
    """Rows repeating an earlier row in every imported field, and a mask of them over all rows
    (`keys` holds the good rows, indexed by row)."""
    mask = np.zeros(len(position), dtype=bool)
    repeated = keys[keys.duplicated(keep=False)]
    if repeated.empty:
        return [], mask
    group = repeated.groupby(list(repeated.columns), sort=False, dropna=False).ngroup()
    first = pd.Series(repeated.index, index=repeated.index).groupby(group).transform("first")
    later = first[first.index != first.to_numpy()]
    mask[later.index.to_numpy()] = True
    found = [
        BadRow(int(position[i]), "", "", f"repeats {unit} {position[j]} exactly")
        for i, j in later.items()
    ]
    return found, mask


def _clashing_ids(
    ids: pd.Series, position: np.ndarray, unit: str, column: str
) -> tuple[list[BadRow], np.ndarray]:
    """Orders sharing an id but not their content, and where they are: every one of them is a
    bad row, since which one is right cannot be told."""
    clash = ids[ids.duplicated(keep=False)]
    if clash.empty:
        return [], clash.index.to_numpy()
    lines = pd.Series(position[clash.index.to_numpy()], index=clash.index).groupby(clash).agg(list)
    out = []
    for i, value in clash.items():
        other = next(p for p in lines[value] if p != position[i])
        reason = f"order id also on {unit} {other} with other values"
        out.append(BadRow(int(position[i]), column, value, reason))
    return out, clash.index.to_numpy()


def _refusal(bad: list[BadRow], duplicates: list[BadRow], unit: str) -> str:
    said = []
    if bad:
        said.append(f"{len(bad)} bad value(s) in {len({b.position for b in bad})} {unit}(s)")
    if duplicates:
        said.append(f"{len(duplicates)} exact duplicate {unit}(s)")
    listed = sorted(bad + duplicates, key=lambda b: (b.position, b.column))
    shown = "\n".join(f"  {b.describe(unit)}" for b in listed[:20])
    more = f"\n  ... and {len(listed) - 20} more" if len(listed) > 20 else ""
    return (
        f"{' and '.join(said)}; nothing was written "
        f"(use --on-bad-rows skip to import the rest):\n{shown}{more}"
    )


def _returns(
    take: np.ndarray,
    when: pd.Series,
    who: pd.Series,
    qty: pd.Series,
    value: pd.Series,
    marked: pd.Series,
    linked: pd.Series | None,
) -> pa.Table:
    """The `returns` rows: cancellations and refunds, numbered in time order, with what came
    back as positive quantities and amounts."""
    rows = when[take].sort_values(kind="stable").index
    m = len(rows)
    order = (
        pa.nulls(m, pa.int64())
        if linked is None
        else pa.array(
            linked[rows].astype("Int64").to_numpy(dtype=object, na_value=None), pa.int64()
        )
    )
    reason = np.where(marked[rows].to_numpy(), "cancelled", "refund")
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(1, m + 1), pa.int64()),
            order,
            pa.array(who[rows].to_numpy(dtype=object), pa.string()),
            pa.nulls(m, pa.string()),
            pa.array(qty[rows].abs().to_numpy(dtype=np.int64), pa.int16()),
            pa.array(when[rows], SCHEMAS["returns"].field("requested_at").type),
            pa.array(reason, pa.string()),
            pa.array(value[rows].abs().to_numpy(dtype=float), pa.float64()),
        ],
        schema=SCHEMAS["returns"],
    )
