"""Checking a folder of raw tables against their contracts, within and across tables."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pandera.errors
import pyarrow.parquet as pq

from cadence.ingest import _tables as T
from cadence.ingest._contracts import ROW_CHECKS, contract, type_problems
from cadence.ingest._manifest import read_manifest

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Violation:
    """One broken rule: which table and column, which check, how many rows, a few of them."""

    table: str
    column: str
    check: str
    count: int
    examples: tuple[str, ...] = ()
    file: str = ""  # set when the fault is the file itself (it cannot be read)

    def __str__(self) -> str:
        if self.file:
            return f"{self.file}: {self.check}"
        where = f"{self.table}.{self.column}" if self.column else self.table
        shown = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{where}: {self.check} fails for {self.count:,} row(s){shown}"


def read_end(folder: Path) -> pd.Timestamp | None:
    """The data's end instant from manifest.json, if there is one."""
    manifest = read_manifest(folder)
    return None if manifest is None else pd.Timestamp(manifest.end).tz_convert("UTC")


def validate_dir(folder: Path) -> list[Violation]:
    """Validates every raw table in `folder` (one `<table>.parquet` each). Writes nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        return [Violation("", "", f"folder {folder} does not exist", 1)]
    violations: list[Violation] = []
    tables: dict[str, pd.DataFrame] = {}
    unusable: set[str] = set()  # present, but not checkable: named once, not also "missing"
    for name in T.SCHEMAS:
        path = folder / f"{name}.parquet"
        if not path.exists():
            continue
        try:
            problems = type_problems(name, pq.read_schema(path))
            if not problems:
                tables[name] = pd.read_parquet(path, columns=[f.name for f in T.SCHEMAS[name]])
        except Exception as exc:  # unreadable file: report it by its path, do not crash
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            violations.append(
                Violation(name, "", f"unreadable Parquet file ({said})", 1, file=str(path))
            )
            unusable.add(name)
            continue
        violations += [Violation(name, col, problem, 1) for col, problem in problems]
        if problems:
            unusable.add(name)
    try:
        end = read_end(folder)
    except ValueError as exc:
        return [*violations, Violation("manifest.json", "end", str(exc), 1)]
    violations += validate_tables(tables, end=end, unusable=unusable)
    return violations


def validate_tables(
    tables: dict[str, pd.DataFrame],
    *,
    end: pd.Timestamp | None = None,
    unusable: Collection[str] = (),
) -> list[Violation]:
    """Validates frames already in memory: required tables, each contract, foreign keys, time.
    `unusable` names tables present but already reported unreadable or mistyped: they are not
    also reported missing."""
    violations = [
        Violation(name, "", "required table is missing", 1)
        for name in T.REQUIRED_TABLES
        if name not in tables and name not in unusable
    ]
    good: dict[str, pd.DataFrame] = {}
    for name, frame in tables.items():
        missing = [f.name for f in T.SCHEMAS[name] if f.name not in frame.columns]
        if missing:
            violations += [Violation(name, col, "missing column", 1) for col in missing]
            continue
        violations += _check_contract(name, frame)
        good[name] = frame
    violations += _check_foreign_keys(good)
    if end is None and "orders" in good and len(good["orders"]):
        end = good["orders"].ordered_at.max()
    if end is not None:
        violations += _check_end(good, end)
    return violations


def _check_contract(name: str, frame: pd.DataFrame) -> list[Violation]:
    try:
        contract(name).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        return _from_failures(name, exc.failure_cases)
    return []


def _from_failures(name: str, cases: pd.DataFrame) -> list[Violation]:
    out = []
    cases = cases.assign(column=cases["column"].fillna(""), check=cases["check"].astype(str))
    # A check across columns fails once per row, not once per column it reads.
    across = cases["check"].isin(ROW_CHECKS | {"multiple_fields_uniqueness"})
    rows = cases[across].drop_duplicates(["check", "index"])
    for check, group in rows.groupby("check", sort=True):
        examples = tuple(f"row {i}" for i in group["index"].head(MAX_EXAMPLES))
        key = check == "multiple_fields_uniqueness"
        out.append(
            Violation(
                name, ", ".join(T.KEYS[name]) if key else "", _readable(check), len(group), examples
            )
        )
    cases = cases[~across]
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        examples = tuple(
            f"row {idx}: {val!r}" if pd.notna(idx) else repr(val)
            for idx, val in zip(group["index"], group["failure_case"], strict=True)
        )
        out.append(
            Violation(name, str(column), _readable(check), len(group), examples[:MAX_EXAMPLES])
        )
    return out


def _readable(check: str) -> str:
    return {
        "not_nullable": "null in a column that must be filled",
        "field_uniqueness": "duplicate key",
        "multiple_fields_uniqueness": "duplicate key",
        "column_in_dataframe": "missing column",
    }.get(check, check)


def _check_foreign_keys(tables: dict[str, pd.DataFrame]) -> list[Violation]:
    out = []
    for (table, column), (ref_table, ref_column) in T.FOREIGN_KEYS.items():
        if table not in tables or ref_table not in tables:
            continue
        values = tables[table][column]
        known = pd.Index(tables[ref_table][ref_column].unique())
        bad = values.notna() & ~values.isin(known)
        if bad.any():
            out.append(
                Violation(
                    table,
                    column,
                    f"not found in {ref_table}.{ref_column}",
                    int(bad.sum()),
                    tuple(f"row {i}: {v!r}" for i, v in values[bad].head(MAX_EXAMPLES).items()),
                )
            )
    return out


def _check_end(tables: dict[str, pd.DataFrame], end: pd.Timestamp) -> list[Violation]:
    out = []
    for table, columns in T.TIME_COLUMNS.items():
        if table not in tables:
            continue
        for column in columns:
            values = tables[table][column]
            bad = values.notna() & (values > end)
            if bad.any():
                out.append(
                    Violation(
                        table,
                        column,
                        f"timestamp after the data's end {end.isoformat()}",
                        int(bad.sum()),
                        tuple(f"row {i}: {v}" for i, v in values[bad].head(MAX_EXAMPLES).items()),
                    )
                )
    return out
