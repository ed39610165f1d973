"""Reading a shop's order log, CSV, Parquet or Excel, with every value as text exactly as
written: the text encoding and delimiter of a CSV, a workbook's sheet, and a record that does
not fit the header named by its line. Parsing the values is the importer's."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cadence.ingest._values import OrderLogError

__all__ = ["BadRow", "OrderLog", "OrderLogError", "read_order_log"]

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
            if "".join(record).strip():  # blank lines keep their number, nothing else
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
