"""`cadence data ...`: validate raw tables, import a shop's own order log."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from cadence.cli._render import console, err, fail

data_app = typer.Typer(help="Raw data: contracts and imports.", no_args_is_help=True)


class OnBadRows(enum.StrEnum):
    fail = "fail"
    skip = "skip"


@data_app.command("validate")
def validate(
    ctx: typer.Context,
    folder: Annotated[
        Path | None, typer.Argument(help="Raw tables.", show_default="the workspace's raw/")
    ] = None,
) -> None:
    """Check every raw table against its contract; exit 2 on any violation. Changes nothing."""
    from rich.table import Table

    from cadence.flows.steps import ingest as step

    folder = folder or ctx.obj.raw_dir
    with console.status(f"validating {folder}"):
        violations, tables, rows = step.validate(folder)
    if violations:
        table = Table(title=f"{len(violations)} contract violation(s) in {folder}")
        for col in ("table", "column", "check", "rows", "examples"):
            table.add_column(col, overflow="fold")
        for v in violations:
            table.add_row(v.table, v.column, v.check, f"{v.count:,}", "\n".join(v.examples))
        err().print(table)
        raise typer.Exit(code=2)
    console.print(f"[green]valid[/green]: {tables} tables, {rows:,} rows in {folder}")


@data_app.command("import-orders")
def import_orders_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The order log, .csv, .parquet or .xlsx.")],
    customer: Annotated[str, typer.Option(help="Column holding the customer id.")],
    timestamp: Annotated[str, typer.Option(help="Column holding the order time.")],
    amount: Annotated[str, typer.Option(help="Column holding the order amount.")],
    quantity: Annotated[str | None, typer.Option(help="Column holding item counts.")] = None,
    timestamp_format: Annotated[
        str | None,
        typer.Option(help="strftime format of the timestamps.", show_default="ISO 8601"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Raw tables folder.", show_default="the workspace's raw/")
    ] = None,
    on_bad_rows: Annotated[
        OnBadRows,
        typer.Option(help="fail: write nothing if any row is bad; skip: leave them out."),
    ] = OnBadRows.fail,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="A CSV's text encoding, e.g. cp1252.", show_default="UTF-8, else detected"
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(help="A CSV's field delimiter: , ; \\t ...", show_default="detected"),
    ] = None,
    sheet: Annotated[
        str | None, typer.Option(help="An .xlsx workbook's sheet.", show_default="the first")
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Import over a simulated world; its ground truth is removed too."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out even if it holds other files.")
    ] = False,
) -> None:
    """Import a shop's order log as the `orders` table of a raw dataset of its own."""
    from cadence.flows.steps import ingest as step
    from cadence.ingest import NotOurs, OrderLogError

    out = out or ctx.obj.raw_dir
    try:
        result = step.import_order_log(
            file,
            out,
            customer=customer,
            timestamp=timestamp,
            amount=amount,
            quantity=quantity,
            on_bad_rows=on_bad_rows.value,
            timestamp_format=timestamp_format,
            encoding=encoding,
            delimiter=delimiter,
            sheet=sheet,
            truth=ctx.obj.truth_dir if out == ctx.obj.raw_dir else out.parent / "truth",
            replace=replace,
            force=force,
        )
    except NotOurs as exc:
        fail(exc)
    except OrderLogError as exc:
        said = str(exc)
        fail(said if said.startswith(str(file)) else f"{file}: {said}")
    console.print(
        f"imported {result.orders:,} orders into {out}"
        + (" (replacing what it held)" if result.replaced else "")
    )
    if result.bad_rows:
        rows = sorted({b.position for b in result.bad_rows})
        console.print(f"skipped {len(rows)} bad {result.unit}(s):")
        for b in result.bad_rows[:20]:
            console.print(f"  {b.describe(result.unit)}", markup=False)
        if len(result.bad_rows) > 20:
            console.print(f"  ... and {len(result.bad_rows) - 20} more")
