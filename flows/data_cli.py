"""`cadence data ...`: validate raw tables, import a shop's own order log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from flows.settings import Settings
from ingest import (
    OrderLogError,
    import_orders,
    read_order_log,
    staged_dir,
    validate_dir,
)
from ingest._tables import SCHEMAS

data_app = typer.Typer(help="Raw data: contracts and imports.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@data_app.command("validate")
def validate(
    ctx: typer.Context,
    folder: Annotated[Path | None, typer.Argument(help="Raw tables [workspace raw/].")] = None,
) -> None:
    """Check every raw table against its contract; exit 2 on any violation. Changes nothing."""
    settings: Settings = ctx.obj
    folder = folder or settings.raw_dir
    with console.status(f"validating {folder}"):
        violations = validate_dir(folder)
    if violations:
        table = Table(title=f"{len(violations)} contract violation(s) in {folder}")
        for col in ("table", "column", "check", "rows", "examples"):
            table.add_column(col, overflow="fold")
        for v in violations:
            table.add_row(v.table, v.column, v.check, f"{v.count:,}", "\n".join(v.examples))
        err.print(table)
        raise typer.Exit(code=2)
    present = [t for t in SCHEMAS if (folder / f"{t}.parquet").exists()]
    rows = sum(pq.read_metadata(folder / f"{t}.parquet").num_rows for t in present)
    console.print(f"[green]valid[/green]: {len(present)} tables, {rows:,} rows in {folder}")


@data_app.command("import-orders")
def import_orders_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The order log, .csv or .parquet.")],
    customer: Annotated[str, typer.Option(help="Column holding the customer id.")],
    timestamp: Annotated[str, typer.Option(help="Column holding the order time.")],
    amount: Annotated[str, typer.Option(help="Column holding the order amount.")],
    quantity: Annotated[str | None, typer.Option(help="Column holding item counts.")] = None,
    timestamp_format: Annotated[
        str | None, typer.Option(help="strftime format of the timestamps [ISO 8601].")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Raw tables folder [workspace raw/].")] = None,
    on_bad_rows: Annotated[
        str, typer.Option(help="fail: write nothing if any row is bad; skip: leave them out.")
    ] = "fail",
) -> None:
    """Import a shop's order log as the `orders` table of a raw dataset of its own."""
    settings: Settings = ctx.obj
    out = out or settings.raw_dir
    if on_bad_rows not in ("fail", "skip"):
        err.print(f"[red]--on-bad-rows must be fail or skip, got '{on_bad_rows}'[/red]")
        raise typer.Exit(code=2)
    try:
        log = read_order_log(file)
        result = import_orders(
            log,
            customer=customer,
            timestamp=timestamp,
            amount=amount,
            quantity=quantity,
            on_bad_rows=on_bad_rows,  # type: ignore[arg-type]
            timestamp_format=timestamp_format,
        )
    except OrderLogError as exc:
        err.print(f"[red]{file}: {exc}[/red]")
        raise typer.Exit(code=2) from exc
    if result.orders.num_rows == 0:
        err.print(f"[red]{file}: no valid orders to import; nothing was written[/red]")
        raise typer.Exit(code=2)
    ts = result.orders["ordered_at"]
    manifest = {
        "source": "import",
        "file": str(file),
        "start": ts[0].as_py().isoformat(),
        "end": ts[-1].as_py().isoformat(),
        "tables": {"orders": result.orders.num_rows},
    }
    replaced = out.exists() and any(out.iterdir())
    with staged_dir(out) as tmp:
        pq.write_table(result.orders, tmp / "orders.parquet", compression="zstd")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    console.print(
        f"imported {result.orders.num_rows:,} orders into {out}"
        + (" (replacing what it held)" if replaced else "")
    )
    if result.bad_rows:
        rows = sorted({b.position for b in result.bad_rows})
        console.print(f"skipped {len(rows)} bad {result.unit}(s):")
        for b in result.bad_rows[:20]:
            console.print(f"  {result.unit} {b.position}: {b.column} = {b.value!r}: {b.reason}")
        if len(result.bad_rows) > 20:
            console.print(f"  ... and {len(result.bad_rows) - 20} more")
