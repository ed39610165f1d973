"""Bringing a shop's own order log (any column names) in as a valid `orders` table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cadence.ingest._read_log import BadRow, OrderLog, read_order_log
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
    lines: int = 0  # rows that went into the orders and returns


def check_options(
    *,
    amount: str | None = None,
    unit_price: str | None = None,
    quantity: str | None = None,
    timestamp_format: str | None = None,
    timezone: str = "UTC",
    as_of: str | dt.date | None = None,
    order_id: str | None = None,
    cancelled_prefix: str | None = None,
) -> tuple[ZoneInfo, tuple[dt.date, pd.Timestamp] | None]:
    """Checks the options that need no file, so a bad one fails before a large log is read:
    the money column named once, the zone, and the `--as-of` day with the instant it ends."""
    if amount is None and unit_price is None:
        raise OrderLogError(
            "name the money column: --amount COLUMN (each row's amount) or --unit-price COLUMN "
            "(each line's price per item, with --quantity)"
        )
    if amount is not None and unit_price is not None:
        raise OrderLogError(
            "--amount and --unit-price: give one of the two, not both (--amount for a "
            "row's amount, --unit-price for its price per item)"
        )
    if unit_price is not None and quantity is None:
        raise OrderLogError(
            "--unit-price needs --quantity: a line's amount is its quantity x its unit price"
        )
    if timestamp_format is not None:
        check_format(timestamp_format)
    tz = zone(timezone)
    if cancelled_prefix is not None and order_id is None:
        raise OrderLogError("--cancelled-prefix marks order ids: name their column with --order-id")
    if cancelled_prefix is not None and not cancelled_prefix.strip():
        raise OrderLogError("--cancelled-prefix: give the text cancelled ids start with, e.g. C")
    return tz, None if as_of is None else as_of_end(as_of, tz)


# What a line is: part of an order, or of a return and which kind.
_ORDER, _REFUND, _CANCELLED = 0, 1, 2
_REASONS = {_REFUND: "refund", _CANCELLED: "cancelled"}


def import_orders(
    log: OrderLog,
    *,
    customer: str,
    timestamp: str,
    amount: str | None = None,
    unit_price: str | None = None,
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
    skipped.

    Money is each row's `amount`, or its `unit_price` times its `quantity`. Timestamps are
    ISO 8601 unless `timestamp_format` (strftime) says otherwise or the column proves one
    common day/month form (`_values.parse_timestamps`); those without a zone are wall times in
    `timezone`. Rows with a negative amount or quantity, or marked cancelled (`cancelled`: a
    yes/no column, or `COLUMN=VALUE[,VALUE]`; `cancelled_prefix`: order ids starting with it),
    are returns.

    Without `order_id` each row is an order (or a return), and a row repeating an earlier one
    exactly is a duplicate. With it, rows sharing an id are the lines of one order, as a
    line-level log (one row per product of an invoice) has them: they must agree on customer
    and timestamp, and the order's amount and item count are their sums. Its return lines
    (negative, or marked cancelled) make one return per id, reason and time, linked to the
    order whose id is theirs without `cancelled_prefix`.
    """
    tz, end = check_options(
        amount=amount,
        unit_price=unit_price,
        quantity=quantity,
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
    money = amount if amount is not None else unit_price
    assert money is not None  # check_options
    wanted = {"--customer": customer, "--timestamp": timestamp}
    wanted["--amount" if amount is not None else "--unit-price"] = money
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

    raw_money = text(money)
    flag(raw_money == "", money, "missing amount" if amount is not None else "missing unit price")
    number = parse_numbers(raw_money, decimal_comma=decimal_comma)
    refuse(number.refused, money)
    value = number.values.reindex(frame.index)
    places = number.places
    if unit_price is not None:
        value = qty * value
        flag(value.abs() == np.inf, money, "quantity x unit price is not a finite number")
        value = value.where(value.abs() != np.inf)
        if places is not None:  # 6 x 2.55 is 15.3 as written, not 15.299999999999999
            value = value.round(places)

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
    oid = None
    link = pd.Series(None, index=frame.index, dtype=object)
    if order_id is not None:
        oid = text(order_id)
        flag(oid == "", order_id, "empty order id")
        link = oid
        if cancelled_prefix is not None:
            prefixed = _starts_with(oid, cancelled_prefix)
            marked = marked | prefixed
            link = oid.where(~prefixed, oid[prefixed].str.slice(len(cancelled_prefix)))

    is_return = ((value < 0) | (qty < 0) | marked).to_numpy()
    kind = np.where(marked.to_numpy(), _CANCELLED, np.where(is_return, _REFUND, _ORDER))

    duplicates: list[BadRow] = []
    is_dup = np.zeros(len(frame), dtype=bool)
    if oid is None:
        # Each row is an order: one repeating another exactly is a duplicate.
        keys = {"user": who, "at": when, "amount": value, "qty": qty, "marked": marked}
        duplicates, is_dup = _exact_duplicates(pd.DataFrame(keys)[~is_bad], position, unit)
        group = np.arange(len(frame))
    else:
        # Rows sharing an id are the lines of one order; the same product on two lines is
        # two lines, not a duplicate.
        group = pd.factorize(oid)[0]
        named = oid.to_numpy() != ""
        stamp = when.dt.tz_localize(None).to_numpy()  # UTC
        for values, shown, col, among in (
            (who.to_numpy(), who, customer, named & (who.to_numpy() != "")),
            (stamp, raw_ts, timestamp, named & ~np.isnat(stamp) & (kind == _ORDER)),
        ):
            found, rows = _disagreeing(group, values, among)
            is_bad[rows] = True
            for i, j in zip(rows, found, strict=True):
                reason = (
                    f"differs from {unit} {position[j]}, the first {unit} of order "
                    f"{oid.iat[i]} ({shown.iat[j]!r})"
                )
                bad.append(BadRow(int(position[i]), col, str(frame.at[i, col]), reason))

    keep = ~is_bad & ~is_dup
    lines = pd.DataFrame(
        {
            "group": group,
            "kind": kind,
            "at": when,
            "who": who,
            "link": link,
            "value": value.abs(),
            "qty": qty.abs(),
            "row": np.arange(len(frame)),
        }
    )[keep]
    taken = lines[lines["kind"] == _ORDER]
    given = lines[lines["kind"] != _ORDER]
    # An order's lines share its id; a return's share its id, reason and time (one order can
    # be refunded twice, at different times).
    too_many = _over(taken, ["group"], _MAX_ITEMS, "order") + _over(
        given, ["group", "kind", "at"], _MAX_RETURNED, "return"
    )
    for rows, reason in too_many:
        is_bad[rows] = True
        col = quantity or money
        for i in rows:
            bad.append(BadRow(int(position[i]), col, str(frame.at[i, col]), reason))

    bad.sort(key=lambda b: (b.position, b.column))
    if (bad or duplicates) and on_bad_rows == "fail":
        raise OrderLogError(_refusal(bad, duplicates, unit))
    taken = taken[~is_bad[taken["row"].to_numpy()]]
    given = given[~is_bad[given["row"].to_numpy()]]
    orders = _summed(taken, ["group"], places)
    returns = _summed(given, ["group", "kind", "at"], places)

    n = len(orders)
    order_table = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, n + 1), pa.int64()),
            pa.array(orders["who"].to_numpy(dtype=object), pa.string()),
            pa.array(orders["at"], SCHEMAS["orders"].field("ordered_at").type),
            pa.nulls(n, pa.string()),
            pa.array(orders["qty"].to_numpy(dtype=np.int64), pa.int32()),
            pa.array(orders["value"].to_numpy(dtype=float), pa.float64()),
            pa.array(np.zeros(n), pa.float64()),
        ],
        schema=SCHEMAS["orders"],
    )
    order_ids = None
    if oid is not None:
        # An order's own id is its lines' link: only a cancellation's has the prefix cut off.
        order_ids = pa.table(
            {
                "order_id": pa.array(np.arange(1, n + 1), pa.int64()),
                "shop_order_id": pa.array(orders["link"].to_numpy(dtype=object), pa.string()),
            }
        )
    linked = None
    if oid is not None:
        linked = returns["link"].map(pd.Series(np.arange(1, n + 1), index=orders["link"]))
    return ImportResult(
        order_table,
        bad,
        unit,
        returns=_returns(returns, linked),
        order_ids=order_ids,
        duplicates=duplicates,
        timezone=tz.key,
        timestamp_form=ts.form,
        form_inferred=ts.inferred,
        lines=int(orders["lines"].sum() + returns["lines"].sum()),
    )


def _disagreeing(
    group: np.ndarray, values: np.ndarray, among: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(first rows, rows): the rows among `among` whose value differs from the first such row
    of their group, and that first row for each."""
    rows = np.flatnonzero(among)
    first = pd.Series(rows).groupby(group[rows], sort=False).transform("first").to_numpy()
    differ = values[rows] != values[first]
    return first[differ], rows[differ]


def _over(
    lines: pd.DataFrame, by: list[str], limit: int, what: str
) -> list[tuple[np.ndarray, str]]:
    """(rows, reason) for each order or return whose items add up beyond what its table holds."""
    total = lines.groupby(by, sort=False)["qty"].transform("sum")
    over = lines[total.to_numpy() > limit]
    out = []
    for _, part in over.groupby(by, sort=False):
        rows = part["row"].to_numpy()
        together = f" ({len(rows)} lines together)" if len(rows) > 1 else ""
        out.append((rows, f"more than {limit:,} items in one {what}{together}"))
    return out


def _summed(lines: pd.DataFrame, by: list[str], places: int | None) -> pd.DataFrame:
    """One row per order or return: its first line's customer, time, link and row, its lines'
    summed amount and items, and how many lines it has; in time order, then file order."""
    how = {"row": "first", "at": "first", "who": "first", "link": "first", "kind": "first"}
    how |= {"value": "sum", "qty": "sum"}
    summed = lines.groupby(by, sort=False, as_index=False).agg(
        **{col: (col, f) for col, f in how.items() if col not in by}, lines=("row", "size")
    )
    if places is not None:  # sums as written: 0.1 + 0.2 is 0.3
        summed["value"] = summed["value"].round(places)
    return summed.sort_values(["at", "row"], kind="stable").reset_index(drop=True)


def _trimmed(values: pd.Series) -> np.ndarray:
    """The column's text without surrounding spaces, "" for none (Arrow's kernels: a large
    log's columns are trimmed in milliseconds, not seconds)."""
    arr = pa.array(values.to_numpy(dtype=object), pa.string(), from_pandas=True)
    return pc.fill_null(pc.utf8_trim_whitespace(arr), "").to_numpy(zero_copy_only=False)


def _starts_with(text: pd.Series, prefix: str) -> pd.Series:
    arr = pa.array(text.to_numpy(dtype=object), pa.string())
    hit = pc.starts_with(arr, prefix).to_numpy(zero_copy_only=False)
    return pd.Series(hit, index=text.index)


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


def _returns(returns: pd.DataFrame, linked: pd.Series | None) -> pa.Table:
    """The `returns` rows: cancellations and refunds, numbered in time order, with what came
    back as positive quantities and amounts."""
    m = len(returns)
    order = (
        pa.nulls(m, pa.int64())
        if linked is None
        else pa.array(linked.astype("Int64").to_numpy(dtype=object, na_value=None), pa.int64())
    )
    reason = returns["kind"].map(_REASONS).to_numpy(dtype=object)
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(1, m + 1), pa.int64()),
            order,
            pa.array(returns["who"].to_numpy(dtype=object), pa.string()),
            pa.nulls(m, pa.string()),
            pa.array(returns["qty"].to_numpy(dtype=np.int64), pa.int16()),
            pa.array(returns["at"], SCHEMAS["returns"].field("requested_at").type),
            pa.array(reason, pa.string()),
            pa.array(returns["value"].to_numpy(dtype=float), pa.float64()),
        ],
        schema=SCHEMAS["returns"],
    )
