"""Ingest steps: validate a raw folder; import a shop's own order log as a raw dataset."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from cadence.ingest import (
    SCHEMAS,
    BadRow,
    OrderLogError,
    RawManifest,
    Violation,
    check_import_options,
    check_replaceable,
    import_orders,
    read_manifest,
    read_order_log,
    staged_dir,
    validate_dir,
    write_manifest,
)


@dataclass(frozen=True)
class Imported:
    orders: int
    replaced: bool
    bad_rows: list[BadRow]
    unit: str
    manifest: RawManifest
    returns: dict[str, int] = field(default_factory=dict)  # reason -> rows
    duplicates: list[BadRow] = field(default_factory=list)  # exact repeats left out
    timezone: str = "UTC"  # the zone timestamps without one were read in
    timestamp_form: str = "ISO 8601"
    form_inferred: bool = False
    lines: int = 0  # rows that went into the orders and returns


def validate(folder: Path) -> tuple[list[Violation], int, int]:
    """(violations, tables present, rows in them). Changes nothing."""
    violations = validate_dir(folder)
    present = [t for t in SCHEMAS if (folder / f"{t}.parquet").exists()]
    rows = 0
    for t in present:
        try:
            rows += pq.read_metadata(folder / f"{t}.parquet").num_rows
        except Exception:  # unreadable: validate_dir has named the file
            continue
    return violations, len(present), rows


def _sha256(file: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(file).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# Options whose default is a value rather than None: left out of the manifest at it.
_DEFAULTS: dict[str, object] = {"timezone": "UTC", "decimal_comma": False}


def recorded_options(**options: object) -> dict[str, str | None]:
    """The options as the manifest records them: those that were set, by name, as text. An
    option left at its default is not recorded, so an import made before an option existed
    still reads as made with its default, and the CLI and the flow record the same options
    the same way (`as_of` as YYYY-MM-DD, a flag as "true")."""
    return {
        k: "true" if v is True else str(v)
        for k, v in sorted(options.items())
        if v is not None and not (k in _DEFAULTS and v == _DEFAULTS[k])
    }


def unchanged(out: Path, file: Path, **options: object) -> bool:
    """True when `out` holds an import of these very bytes, read with these options (the
    keyword arguments of `import_order_log` other than the folders and `replace`/`force`)."""
    from cadence.ingest import read_manifest

    try:
        manifest = read_manifest(out)
    except ValueError:
        return False
    return (
        manifest is not None
        and manifest.source == "import"
        and (out / "orders.parquet").exists()
        and manifest.file_sha256 == _sha256(file)
        and manifest.options == recorded_options(**options)
    )


def import_order_log(
    file: Path,
    out: Path,
    *,
    customer: str,
    timestamp: str,
    amount: str | None = None,
    unit_price: str | None = None,
    quantity: str | None = None,
    timestamp_format: str | None = None,
    on_bad_rows: Literal["fail", "skip"] = "fail",
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    timezone: str = "UTC",
    as_of: str | dt.date | None = None,
    decimal_comma: bool = False,
    order_id: str | None = None,
    cancelled: str | None = None,
    cancelled_prefix: str | None = None,
    truth: Path | None = None,
    replace: bool = False,
    force: bool = False,
) -> Imported:
    """Reads the log, checks every row, and swaps the `orders` table (with its manifest) into
    `out` whole; OrderLogError (naming the file, option, column or line) leaves `out` as it was.

    `out` holding files Cadence did not write is refused unless `force`. `out` holding a
    simulated world is refused unless `replace`; the world's `truth` folder then goes too, so
    an imported shop is never evaluated against a foreign oracle.

    Money is `amount` per row, or `unit_price` times `quantity` per line. Returns (refunds,
    cancellations) go to `returns.parquet` beside `orders.parquet`; with `order_id`, rows
    sharing an id are the lines of one order (`import_orders`), and `order_ids.parquet` maps
    each `order_id` to the shop's own id. `as_of`, when given, is the data's end in the
    manifest; else the last order or return is.

    A CSV's encoding and delimiter are detected when not given; the same bytes always detect
    the same way, so the manifest records the options as given."""
    _, end = check_import_options(
        amount=amount,
        unit_price=unit_price,
        quantity=quantity,
        timestamp_format=timestamp_format,
        timezone=timezone,
        as_of=as_of,
        order_id=order_id,
        cancelled_prefix=cancelled_prefix,
    )
    check_replaceable(out, force=force)
    try:
        held = read_manifest(out) if (out / "manifest.json").exists() else None
    except ValueError as exc:
        if not force:
            raise OrderLogError(f"{exc}; pass --force to replace {out}") from None
        held = None
    if held is not None and held.source == "world" and not replace:
        raise OrderLogError(
            f"{out} holds a simulated world; pass --replace to import over it "
            f"(its ground truth{f' in {truth}' if truth else ''} is removed too)"
        )
    reading = {"encoding": encoding, "delimiter": delimiter, "sheet": sheet}
    log = read_order_log(file, **reading)
    parsing = {
        "customer": customer,
        "timestamp": timestamp,
        "amount": amount,
        "unit_price": unit_price,
        "quantity": quantity,
        "timestamp_format": timestamp_format,
        "on_bad_rows": on_bad_rows,
        "timezone": timezone,
        "as_of": as_of,
        "decimal_comma": decimal_comma,
        "order_id": order_id,
        "cancelled": cancelled,
        "cancelled_prefix": cancelled_prefix,
    }
    result = import_orders(log, **parsing)  # type: ignore[arg-type]
    if result.orders.num_rows == 0:
        raise OrderLogError("no valid orders to import; nothing was written")
    times = [result.orders["ordered_at"], result.returns["requested_at"]]
    tables = {"orders": result.orders.num_rows}
    if result.returns.num_rows:
        tables["returns"] = result.returns.num_rows
    manifest = RawManifest(
        source="import",
        file=str(file),
        start=min(t[0].as_py() for t in times if len(t)),
        end=end[1].to_pydatetime() if end else max(t[-1].as_py() for t in times if len(t)),
        tables=tables,
        file_sha256=_sha256(file),
        options=recorded_options(**reading, **parsing),
    )
    replaced = out.exists() and any(out.iterdir())
    with staged_dir(out) as tmp:
        pq.write_table(result.orders, tmp / "orders.parquet", compression="zstd")
        if result.returns.num_rows:
            pq.write_table(result.returns, tmp / "returns.parquet", compression="zstd")
        if result.order_ids is not None:
            pq.write_table(result.order_ids, tmp / "order_ids.parquet", compression="zstd")
        write_manifest(tmp, manifest)
    if held is not None and held.source == "world" and truth is not None and truth.exists():
        import shutil

        shutil.rmtree(truth)
    reasons = result.returns["reason"].value_counts().to_pylist()
    return Imported(
        result.orders.num_rows,
        replaced,
        result.bad_rows,
        result.unit,
        manifest,
        returns={r["values"]: r["counts"] for r in reasons},
        duplicates=result.duplicates,
        timezone=result.timezone,
        timestamp_form=result.timestamp_form,
        form_inferred=result.form_inferred,
        lines=result.lines,
    )
