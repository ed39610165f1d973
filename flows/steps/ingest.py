"""Ingest steps: validate a raw folder; import a shop's own order log as a raw dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from cadence.ingest import (
    SCHEMAS,
    BadRow,
    OrderLogError,
    RawManifest,
    Violation,
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


def validate(folder: Path) -> tuple[list[Violation], int, int]:
    """(violations, tables present, rows in them). Changes nothing."""
    violations = validate_dir(folder)
    present = [t for t in SCHEMAS if (folder / f"{t}.parquet").exists()]
    rows = sum(pq.read_metadata(folder / f"{t}.parquet").num_rows for t in present)
    return violations, len(present), rows


def _sha256(file: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(file).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _options(**options: str | None) -> dict[str, str | None]:
    return dict(sorted(options.items()))


def unchanged(out: Path, file: Path, **options: str | None) -> bool:
    """True when `out` holds an import of these very bytes, read with these options."""
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
        and manifest.options == _options(**options)
    )


def import_order_log(
    file: Path,
    out: Path,
    *,
    customer: str,
    timestamp: str,
    amount: str,
    quantity: str | None = None,
    timestamp_format: str | None = None,
    on_bad_rows: Literal["fail", "skip"] = "fail",
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    truth: Path | None = None,
    replace: bool = False,
    force: bool = False,
) -> Imported:
    """Reads the log, checks every row, and swaps the `orders` table (with its manifest) into
    `out` whole; OrderLogError (naming the file, option, column or line) leaves `out` as it was.

    `out` holding files Cadence did not write is refused unless `force`. `out` holding a
    simulated world is refused unless `replace`; the world's `truth` folder then goes too, so
    an imported shop is never evaluated against a foreign oracle.

    A CSV's encoding and delimiter are detected when not given; the same bytes always detect
    the same way, so the manifest records the options as given."""
    check_replaceable(out, force=force)
    held = read_manifest(out) if (out / "manifest.json").exists() else None
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
        "quantity": quantity,
        "timestamp_format": timestamp_format,
        "on_bad_rows": on_bad_rows,
    }
    result = import_orders(log, **parsing)  # type: ignore[arg-type]
    if result.orders.num_rows == 0:
        raise OrderLogError("no valid orders to import; nothing was written")
    ts = result.orders["ordered_at"]
    manifest = RawManifest(
        source="import",
        file=str(file),
        start=ts[0].as_py(),
        end=ts[-1].as_py(),
        tables={"orders": result.orders.num_rows},
    )
    manifest = manifest.model_copy(
        update={"file_sha256": _sha256(file), "options": _options(**reading, **parsing)}
    )
    replaced = out.exists() and any(out.iterdir())
    with staged_dir(out) as tmp:
        pq.write_table(result.orders, tmp / "orders.parquet", compression="zstd")
        write_manifest(tmp, manifest)
    if held is not None and held.source == "world" and truth is not None and truth.exists():
        import shutil

        shutil.rmtree(truth)
    return Imported(result.orders.num_rows, replaced, result.bad_rows, result.unit, manifest)
