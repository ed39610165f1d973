"""Bringing a shop's own order log (any column names) in as a valid `orders` table."""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from charset_normalizer import from_bytes

from cadence.ingest._tables import SCHEMAS

OnBadRows = Literal["fail", "skip"]

_KINDS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet", ".xlsx": "Excel"}
# Short Western and Central European texts decode alike (é, ü, ç exist in both), so the
# detector ties them; a shop's log is likelier Western, and --encoding settles it otherwise.
_WESTERN = ("cp1252", "latin_1", "iso8859_15")


class OrderLogError(ValueError):
    """The order log cannot be imported as asked; the message says why."""


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


@dataclass(frozen=True)
class ImportResult:
    orders: pa.Table
    bad_rows: list[BadRow] = field(default_factory=list)
    unit: str = "line"


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
    detected one; a BOM never reaches the first column's name."""
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise OrderLogError(
                f"--encoding {encoding!r}: unknown encoding; try utf-8, cp1252, latin-1 or gbk"
            ) from None
        codec = "utf-8-sig" if codec == "utf-8" else codec
        shown = encoding
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
        matches = from_bytes(raw)
        best = matches.best()
        if best is None:
            raise OrderLogError(
                f"{path}: cannot tell the text encoding; name it with --encoding, e.g. cp1252"
            )
        tied = [cp for m in matches if m.chaos <= best.chaos for cp in m.could_be_from_charset]
        codec = next((cp for cp in _WESTERN if cp in tied), best.encoding)
        shown = f"{codec} (detected)"
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise OrderLogError(
            f"{path}: line {line} is not valid {shown} text (byte 0x{raw[exc.start]:02x}); "
            "name the file's encoding with --encoding, e.g. --encoding cp1252"
        ) from None


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
    return OrderLog(frame, "line", np.array(positions, dtype=np.int64), tuple(malformed))


def _read_parquet(path: Path) -> OrderLog:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, ValueError) as exc:
        raise OrderLogError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    text = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(col.type):
            values = col.to_pandas().map(lambda v: v.isoformat() if pd.notna(v) else None)
        else:
            # Arrow's own cast: an integer column with nulls stays 101, not pandas' 101.0.
            try:
                values = pc.cast(col, pa.string()).to_pylist()
            except pa.ArrowNotImplementedError:
                values = [None if v is None else str(v) for v in col.to_pylist()]
        text[name] = pd.Series(values, dtype=object)
    frame = pd.DataFrame(text, columns=table.column_names, dtype=object)
    return OrderLog(frame, "row", np.arange(1, table.num_rows + 1))


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
    return OrderLog(frame, "row", np.arange(len(frame)) + 2)  # Excel's rows; the header is 1


def import_orders(
    log: OrderLog,
    *,
    customer: str,
    timestamp: str,
    amount: str,
    quantity: str | None = None,
    on_bad_rows: OnBadRows = "fail",
    timestamp_format: str | None = None,
) -> ImportResult:
    """Parses the log into the `orders` schema; bad rows fail the import or are skipped.

    Timestamps must be ISO 8601 unless `timestamp_format` (strftime) says otherwise: guessing
    would read 02.03.2025 as 3 February in one file and 2 March in another.
    """
    frame = log.frame
    if timestamp_format is not None:
        try:
            pd.to_datetime(pd.Series(["2000-01-01"]), format=timestamp_format, errors="coerce")
        except (ValueError, re.error) as exc:
            raise OrderLogError(f"--timestamp-format {timestamp_format!r}: {exc}") from None
    wanted = {"--customer": customer, "--timestamp": timestamp, "--amount": amount}
    if quantity is not None:
        wanted["--quantity"] = quantity
    for option, col in wanted.items():
        if col not in frame.columns:
            raise OrderLogError(
                f"{option} '{col}': no such column; the file has {list(frame.columns)}"
            )
    position = log.positions
    # Blank lines are not orders; they keep their place in the numbering and are passed over.
    blank = frame.fillna("").astype(str).apply(lambda c: c.str.strip() == "").all(axis=1)
    frame, position = frame[~blank.to_numpy()], position[~blank.to_numpy()]
    bad: list[BadRow] = list(log.malformed)

    def flag(mask: pd.Series, col: str, reason: str) -> None:
        for pos, val in zip(position[mask.to_numpy()], frame.loc[mask, col], strict=True):
            bad.append(BadRow(int(pos), col, "" if val is None else str(val), reason))

    who = frame[customer].fillna("").str.strip()
    flag(who == "", customer, "empty customer id")

    raw_ts = frame[timestamp].fillna("").str.strip()
    when = pd.to_datetime(
        raw_ts.where(raw_ts != ""), errors="coerce", utc=True, format=timestamp_format or "ISO8601"
    )
    flag(raw_ts == "", timestamp, "missing timestamp")
    flag(
        (raw_ts != "") & when.isna(),
        timestamp,
        f"not a timestamp in {timestamp_format or 'ISO 8601'} format",
    )

    raw_amount = frame[amount].fillna("").str.strip()
    value = pd.to_numeric(raw_amount.where(raw_amount != ""), errors="coerce")
    flag(raw_amount == "", amount, "missing amount")
    flag((raw_amount != "") & value.isna(), amount, "amount is not a number")
    flag(value < 0, amount, "negative amount")

    if quantity is not None:
        raw_qty = frame[quantity].fillna("").str.strip()
        qty = pd.to_numeric(raw_qty.where(raw_qty != ""), errors="coerce")
        flag(
            qty.isna() | (qty < 1) | (qty != qty.round()),
            quantity,
            "quantity must be a whole number of at least 1",
        )
    else:
        qty = pd.Series(1, index=frame.index)

    bad.sort(key=lambda b: (b.position, b.column))
    if bad and on_bad_rows == "fail":
        shown = "\n".join(f"  {b.describe(log.unit)}" for b in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise OrderLogError(
            f"{len(bad)} bad value(s) in {len({b.position for b in bad})} {log.unit}(s); "
            f"nothing was written (use --on-bad-rows skip to import the rest):\n{shown}{more}"
        )
    skip = np.isin(position, [b.position for b in bad])
    keep = pd.DataFrame(
        {
            "user_id": who[~skip],
            "ordered_at": when[~skip],
            "amount": value[~skip],
            "n_items": qty[~skip],
            "position": position[~skip],
        }
    ).sort_values(["ordered_at", "position"], kind="stable")
    n = len(keep)
    orders = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, n + 1), pa.int64()),
            pa.array(keep.user_id.to_numpy(dtype=object), pa.string()),
            pa.array(keep.ordered_at, SCHEMAS["orders"].field("ordered_at").type),
            pa.nulls(n, pa.string()),
            pa.array(keep.n_items.to_numpy(dtype=np.int64), pa.int32()),
            pa.array(keep.amount.to_numpy(dtype=float), pa.float64()),
            pa.array(np.zeros(n), pa.float64()),
        ],
        schema=SCHEMAS["orders"],
    )
    return ImportResult(orders, bad, log.unit)
