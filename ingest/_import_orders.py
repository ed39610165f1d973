"""Bringing a shop's own order log (any column names) in as a valid `orders` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from cadence.ingest._tables import SCHEMAS

OnBadRows = Literal["fail", "skip"]


class OrderLogError(ValueError):
    """The order log cannot be imported as asked; the message says why."""


@dataclass(frozen=True)
class BadRow:
    position: int  # line in a CSV (the header is line 1), row in a Parquet file (from 1)
    column: str
    value: str
    reason: str


@dataclass(frozen=True)
class OrderLog:
    frame: pd.DataFrame  # every column as text
    unit: str  # "line" or "row": how positions are counted for the user
    first: int  # position of the frame's first record


@dataclass(frozen=True)
class ImportResult:
    orders: pa.Table
    bad_rows: list[BadRow] = field(default_factory=list)
    unit: str = "line"


def read_order_log(path: Path) -> OrderLog:
    """Reads a CSV or Parquet order log with every value as text, so parsing stays ours."""
    path = Path(path)
    if not path.exists():
        raise OrderLogError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
        return OrderLog(frame, "line", 2)
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
        text = frame.astype(object).where(frame.notna(), None)
        for col in text.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[col]):
                text[col] = frame[col].map(lambda v: v.isoformat() if pd.notna(v) else None)
            else:
                text[col] = text[col].map(lambda v: None if v is None else str(v))
        return OrderLog(text, "row", 1)
    raise OrderLogError(f"{path}: expected a .csv or .parquet file, got '{suffix or path.name}'")


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
    wanted = {"--customer": customer, "--timestamp": timestamp, "--amount": amount}
    if quantity is not None:
        wanted["--quantity"] = quantity
    for option, col in wanted.items():
        if col not in frame.columns:
            raise OrderLogError(
                f"{option} '{col}': no such column; the file has {list(frame.columns)}"
            )
    position = np.arange(len(frame)) + log.first
    # Blank lines are not orders; they keep their place in the numbering and are passed over.
    blank = frame.fillna("").astype(str).apply(lambda c: c.str.strip() == "").all(axis=1)
    frame, position = frame[~blank.to_numpy()], position[~blank.to_numpy()]
    bad: list[BadRow] = []

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
        shown = "\n".join(
            f"  {log.unit} {b.position}: {b.column} = {b.value!r}: {b.reason}" for b in bad[:20]
        )
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
