"""Reading an order log's text values: timestamps in a zone and a form, amounts as plain numbers.

Each parser works on a whole column at once and returns the parsed values beside a reason for
each value it refuses (indexed like the column), so the importer can name bad values by line.
Guessing is kept to what the column itself proves: a date form is inferred only when exactly
one of a few common forms reads every value, and numbers are never read through a thousands
separator, whose meaning differs between countries.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ISO = "ISO 8601"


class OrderLogError(ValueError):
    """The order log cannot be imported as asked; the message says why."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone `--timezone` names; the message lists a few when it names none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise OrderLogError(
            f"--timezone {name!r}: not a known IANA time zone; "
            "e.g. UTC, Europe/Berlin, America/New_York, Asia/Shanghai"
        ) from None


def check_format(fmt: str) -> None:
    """A strftime format pandas can read with, else an error naming --timestamp-format."""
    try:
        pd.to_datetime(pd.Series(["2000-01-01"]), format=fmt, errors="coerce")
    except (ValueError, re.error) as exc:
        raise OrderLogError(f"--timestamp-format {fmt!r}: {exc}") from None


def as_of_end(as_of: str | dt.date, tz: ZoneInfo) -> tuple[dt.date, pd.Timestamp]:
    """The `--as-of` day and the instant it ends (the next local midnight), in UTC."""
    if isinstance(as_of, str):
        try:
            day = dt.date.fromisoformat(as_of.strip())
        except ValueError:
            raise OrderLogError(f"--as-of {as_of}: not a date (YYYY-MM-DD)") from None
    else:
        day = as_of
    today = pd.Timestamp.now(tz=tz).date()
    if day > today:
        raise OrderLogError(f"--as-of {day}: after today ({today}); the data cannot end later")
    midnight = pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(
        tz, nonexistent="shift_forward", ambiguous=True
    )
    return day, midnight.tz_convert("UTC")


# --- timestamps -------------------------------------------------------------------------------

# An explicit zone after a time of day: Z, +01, +0100 or +01:00 (a date's own -01 is not one).
_OFFSET = r"[T\s]\d{1,2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
# d/m/Y-like dates, with an optional time of day: the forms a spreadsheet or a shop exports.
_DATE = (
    r"^(?P<a>\d{1,4})(?P<sep>[/.-])(?P<b>\d{1,2})(?P<sep2>[/.-])(?P<c>\d{1,4})"
    r"(?:(?:\s+|T)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?$"
)
# form -> (separator, order of the three numbers: d, m, Y)
_FORMS: dict[str, tuple[str, str]] = {
    "%d/%m/%Y": ("/", "dmY"),
    "%m/%d/%Y": ("/", "mdY"),
    "%Y/%m/%d": ("/", "Ymd"),
    "%d.%m.%Y": (".", "dmY"),
    "%Y.%m.%d": (".", "Ymd"),
    "%d-%m-%Y": ("-", "dmY"),
    "%m-%d-%Y": ("-", "mdY"),
}


@dataclass(frozen=True)
class Timestamps:
    utc: pd.Series  # UTC instants, NaT where empty or refused
    refused: pd.Series  # reason for each refused value, indexed like the column
    form: str  # ISO 8601, the --timestamp-format given, or the form inferred
    inferred: bool = False


def parse_timestamps(
    text: pd.Series,
    *,
    tz: ZoneInfo,
    fmt: str | None,
    column: str,
    where: Callable[[Hashable], str],
) -> Timestamps:
    """Reads non-empty text as instants. A value without a zone is a wall time in `tz`; one
    with an offset keeps it. ISO 8601 unless `fmt` says otherwise; a column with no ISO value
    at all may prove its form (see `_infer`). `where(index)` names a value's line."""
    text = text[text != ""]
    # Each distinct text is read once, at its first row: a line-level log repeats an
    # invoice's time on every line of it.
    distinct, which = _distinct(text)
    read = _parse_timestamps(distinct, tz=tz, fmt=fmt, column=column, where=where)
    utc = read.utc.reindex(distinct.index).iloc[which].set_axis(text.index)
    refused = _spread(read.refused, distinct, which, text.index)
    return Timestamps(utc, refused, read.form, read.inferred)


def _distinct(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The column's distinct values, each at the index of its first row, and for each row
    which of them (by position) it holds."""
    which, _ = pd.factorize(text.to_numpy(dtype=object))
    _, first = np.unique(which, return_index=True)
    return text.iloc[first], which


def _spread(
    reasons: pd.Series, distinct: pd.Series, which: np.ndarray, index: pd.Index
) -> pd.Series:
    """Reasons given for distinct values (indexed like `distinct`), for every row holding one
    of them (indexed by `index`, the column's)."""
    if reasons.empty:
        return pd.Series(dtype=object)
    said = np.full(len(distinct), None, dtype=object)
    said[distinct.index.get_indexer(reasons.index)] = reasons.to_numpy()
    rows = said[which]
    hit = pd.notna(rows)
    return pd.Series(rows[hit], index=index[hit], dtype=object)


def _parse_timestamps(
    text: pd.Series,
    *,
    tz: ZoneInfo,
    fmt: str | None,
    column: str,
    where: Callable[[Hashable], str],
) -> Timestamps:
    form, inferred = fmt or ISO, False
    if fmt is None:
        naive, aware = _split_by_zone(text, tz)
        wall = pd.to_datetime(naive, format="ISO8601", errors="coerce")
        utc = pd.to_datetime(aware, format="ISO8601", utc=True, errors="coerce")
        if len(text) and wall.isna().all() and utc.isna().all():
            found = _infer(text, column, where)
            if found is not None:
                form, wall, inferred = found[0], found[1], True
                utc = utc.iloc[:0]
    elif "%z" in fmt or "%Z" in fmt:
        wall = pd.Series(pd.NaT, index=text.index[:0], dtype="datetime64[ns]")
        utc = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    else:
        wall = pd.to_datetime(text, format=fmt, errors="coerce")
        utc = pd.Series(pd.NaT, index=text.index[:0], dtype="datetime64[ns, UTC]")
    local = _localize(wall, tz)
    both = pd.concat([local.dt.tz_convert("UTC"), utc.astype("datetime64[ns, UTC]")])
    when = both.reindex(text.index).dt.floor("us")
    if fmt is not None:
        said = f"not a timestamp in --timestamp-format {fmt}"
    elif inferred:
        said = f"not a timestamp in the form {form} inferred from the column"
        said += "; name the form with --timestamp-format"
    else:
        said = f"not a timestamp in {ISO}; name another form with --timestamp-format"
    reasons = pd.Series(said, index=text.index[when.isna().to_numpy()], dtype=object)
    if fmt is None and not inferred:
        reasons.update(_out_of_range(text[reasons.index]))
    gap = wall.notna() & local.isna()  # a wall time the clocks skipped
    reasons.loc[gap[gap].index] = f"does not exist in {tz.key} (the clocks went forward)"
    return Timestamps(when, reasons, form, inferred)


def _out_of_range(text: pd.Series) -> pd.Series:
    """Reasons for ISO timestamps pandas cannot hold (before 1678 or after 2261), which are
    typos rather than text: 2925-01-03 is named as in the future, not as "not a timestamp"."""
    year = pd.to_numeric(text.str.extract(r"^(\d{4})-", expand=False), errors="coerce")
    far = year.notna() & ((year < 1678) | (year > 2261))
    if not far.any():
        return pd.Series(dtype=object)
    again = pd.to_datetime("2000" + text[far].str.slice(4), format="ISO8601", errors="coerce")
    year = year[far][again.notna()]
    return year.map(lambda y: "in the future" if y > 2261 else f"in the year {y:.0f}, too far back")


def _split_by_zone(text: pd.Series, tz: ZoneInfo) -> tuple[pd.Series, pd.Series]:
    """(values without a zone, values with one); in UTC the two read the same, so no split."""
    if tz.key == "UTC":
        return text.iloc[:0], text
    aware = _matches(text, _OFFSET)
    return text[~aware], text[aware]


def _matches(text: pd.Series, pattern: str) -> np.ndarray:
    """Where the (RE2) pattern matches: Arrow's regex kernel, fast on a large log's columns."""
    arr = pa.array(text.to_numpy(dtype=object), pa.string())
    return pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False)


def _localize(wall: pd.Series, tz: ZoneInfo) -> pd.Series:
    # In the hour the clocks go back a wall time happens twice; the first is taken. The zone
    # goes by name: pandas localises a column a hundred times faster so than with a ZoneInfo.
    first = np.ones(len(wall), dtype=bool)
    return wall.dt.tz_localize(tz.key, ambiguous=first, nonexistent="NaT")


def _infer(
    text: pd.Series, column: str, where: Callable[[Hashable], str]
) -> tuple[str, pd.Series] | None:
    """(form, wall times) when exactly one common d/m/Y-like form reads every value that any
    of them reads; None when no value looks like one. Two forms that both fit (no day above
    12 settles it) or none that fits all (the column mixes them) stop the import: a guess
    would read 02/03 as 2 March in one file and 3 February in the next."""
    parts = _date_parts(text)
    looks = parts[0].notna()
    if not looks.any():
        return None
    parts = parts[looks]
    num = parts[[0, 2, 3]].astype(np.int64)
    wide = {0: parts[0].str.len(), 3: parts[3].str.len()}
    fits: dict[str, pd.Series] = {}
    for form, (sep, order) in _FORMS.items():
        at = _positions(order)
        outer = 3 if at["Y"] == 0 else 0  # the day or month at the other end
        fits[form] = (
            (parts[1] == sep)
            & (wide[at["Y"]] == 4)
            & (wide[outer] <= 2)
            & num[at["d"]].between(1, 31)
            & num[at["m"]].between(1, 12)
        )
    some = pd.concat(fits.values(), axis=1).any(axis=1)
    if not some.any():
        return None
    whole = [f for f, ok in fits.items() if ok[some].all()]
    if len(whole) > 1:
        example = text[some[some].index[0]]
        raise OrderLogError(
            f"column {column!r}: its dates, like {example!r}, read as {' or as '.join(whole)} "
            "(no value settles which); name the form with --timestamp-format, "
            f"e.g. --timestamp-format {whole[0]}"
        )
    if not whole:
        clashes = []
        for f, ok in fits.items():
            if ok.any():
                first = ok[some & ~ok].index[0]
                clashes.append(f"{f} does not read {where(first)} {text[first]!r}")
        raise OrderLogError(
            f"column {column!r} mixes date forms ({'; '.join(clashes)}); "
            "name the form with --timestamp-format"
        )
    form = whole[0]
    at = _positions(_FORMS[form][1])
    parts, num = parts[fits[form]], num[fits[form]]
    clock = parts[[4, 5, 6]].fillna("0").astype(np.int64)
    stamp = pd.DataFrame(
        {
            "year": num[at["Y"]],
            "month": num[at["m"]],
            "day": num[at["d"]],
            "hour": clock[4],
            "minute": clock[5],
            "second": clock[6],
        }
    )
    wall = pd.to_datetime(stamp, errors="coerce").reindex(text.index)
    has_time, has_seconds = parts[4].notna(), parts[6].notna()
    if has_seconds.all():
        form += " %H:%M:%S"
    elif has_time.all() and not has_seconds.any():
        form += " %H:%M"
    elif has_time.any():
        form += " [%H:%M[:%S]]"
    return form, wall


def _date_parts(text: pd.Series) -> pd.DataFrame:
    """d/m/Y-like parts of each value, as `Series.str.extract` gives them (0 to 6: number,
    separator, number, number, hour, minute, second; NaN where absent), by Arrow's regex
    kernel: a large log's column in milliseconds."""
    arr = pa.array(text.to_numpy(dtype=object), pa.string())
    found = pc.extract_regex(arr, _DATE)
    parts = {}
    for i, name in enumerate(("a", "sep", "b", "c", "H", "M", "S")):
        values = pc.struct_field(found, name).to_numpy(zero_copy_only=False)
        parts[i] = pd.Series(values, index=text.index, dtype=object).replace("", None)
    frame = pd.DataFrame(parts)
    sep2 = pc.struct_field(found, "sep2").to_numpy(zero_copy_only=False)
    matched = found.is_valid().to_numpy(zero_copy_only=False) & (frame[1].to_numpy() == sep2)
    frame.loc[~matched, :] = None  # no match, or two different separators: 01/02.2025
    return frame


def _positions(order: str) -> dict[str, int]:
    """Which extracted group holds the day, month and year for an order such as 'dmY'."""
    return {k: (0, 2, 3)[order.index(k)] for k in "dmY"}


# --- numbers ----------------------------------------------------------------------------------

_POINT = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"
_COMMA = r"^[+-]?(?:\d+(?:,\d*)?|,\d+)$"
_NOT_FINITE = re.compile(r"^[+-]?(?:inf|infinity|nan)$", re.IGNORECASE)
_CURRENCY = re.compile(r"[$€£¥₹₽₩¢]|\b(?:EUR|USD|GBP|CNY|RMB|JPY|CHF|INR)\b", re.IGNORECASE)
_GROUPS = "[,. '\u00a0\u202f]"  # what shops group thousands with
_GROUPED = re.compile(rf"^[+-]?\d{{1,3}}(?:({_GROUPS})\d{{3}})+(?:[.,]\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+$")


@dataclass(frozen=True)
class Numbers:
    values: pd.Series  # float, NaN where empty or refused
    refused: pd.Series  # reason for each refused value, indexed like the column
    places: int | None = 0  # most digits after the decimal mark; None when one has an exponent


def parse_numbers(text: pd.Series, *, decimal_comma: bool = False) -> Numbers:
    """Reads non-empty text as plain finite numbers: `12.50`, `-3`, `1e3`, or with
    `decimal_comma` `12,50`. Thousands separators, currency symbols and non-finite values are
    refused with a reason: `1,234` is 1234 in one country and 1.234 in another."""
    text = text[text != ""]
    plain = _matches(text, _COMMA if decimal_comma else _POINT)
    read = pa.array(text[plain].to_numpy(dtype=object), pa.string())
    if decimal_comma:
        read = pc.replace_substring(read, ",", ".")
    floats = pc.cast(read, pa.float64()).to_numpy(zero_copy_only=False)
    values = pd.Series(floats, index=text.index[plain]).reindex(text.index)
    refused = ~plain | ~np.isfinite(values.fillna(0.0).to_numpy())
    reasons = pd.Series(
        [_why(v, decimal_comma) for v in text[refused]], index=text.index[refused], dtype=object
    )
    return Numbers(values.where(~refused) + 0.0, reasons, _places(read))  # + 0.0: no -0.0


def _places(read: pa.Array) -> int | None:
    """The most digits any value has after its decimal point (`read` holds them with a '.'),
    so sums and products can be rounded back to what was written: 6 x 2.55 is 15.3, not
    15.299999999999999. None when a value has an exponent, whose places are not written."""
    if len(read) == 0:
        return 0
    if pc.any(pc.match_substring(read, "e", ignore_case=True)).as_py():
        return None
    point = pc.find_substring(read, ".")
    after = pc.subtract(pc.subtract(pc.utf8_length(read), point), 1)
    return int(pc.max(pc.if_else(pc.less(point, 0), 0, after)).as_py())


def _why(value: str, decimal_comma: bool) -> str:
    """Why a value is not a plain number, in words that say how to fix it."""
    if _NOT_FINITE.match(value) or (not decimal_comma and re.fullmatch(_POINT, value)):
        return "not a finite number"  # inf, nan, or too large: 1e999
    if _CURRENCY.search(value):
        return "a currency symbol or code; the column must hold plain numbers"
    grouped = _GROUPED.match(value)
    if grouped:
        sep = grouped.group(1)
        shown = {" ": "space", "\u00a0": "space", "\u202f": "space"}.get(sep, repr(sep))
        if sep == "," and not decimal_comma and re.fullmatch(r"[+-]?\d{1,3},\d{3}", value):
            return (
                "',' is a thousands separator or a decimal comma; write plain numbers "
                "(1234.50), or pass --decimal-comma if ',' is the decimal mark"
            )
        return f"a thousands separator ({shown}); write plain numbers such as 1234.50"
    if _DECIMAL_COMMA.match(value) and not decimal_comma:
        return "a decimal comma; pass --decimal-comma to read 12,50 as 12.50"
    if decimal_comma and "." in value and re.fullmatch(_POINT, value):
        return "a '.' in a number read with --decimal-comma, where ',' is the decimal mark"
    return "not a number"
