"""`cadence data ...`: validate raw tables, import a shop's own order log."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from cadence.cli._render import console, err, fail

data_app = typer.Typer(help="Raw data: contracts and imports.", no_args_is_help=True)


_RETURN_WORDS = {"cancelled": "cancelled", "refund": "refunded"}


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


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
        out = err()
        # A file that cannot be read is named by its path on a line of its own, whole.
        for v in violations:
            if v.file:
                out.print(str(v), style="red", markup=False, highlight=False, soft_wrap=True)
        rest = [v for v in violations if not v.file]
        if rest:
            table = Table(title=f"{len(rest)} contract violation(s) in {folder}")
            for col in ("table", "column", "check", "rows", "examples"):
                table.add_column(col, overflow="fold")
            for v in rest:
                table.add_row(v.table, v.column, v.check, f"{v.count:,}", "\n".join(v.examples))
            out.print(table)
        raise typer.Exit(code=2)
    console.print(f"[green]valid[/green]: {tables} tables, {rows:,} rows in {folder}")


@data_app.command("import-orders")
def import_orders_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The order log, .csv, .parquet or .xlsx.")],
    customer: Annotated[str, typer.Option(help="Column holding the customer id.")],
    timestamp: Annotated[str, typer.Option(help="Column holding the order time.")],
    amount: Annotated[
        str | None,
        typer.Option(help="Column holding the order's (or line's) amount; or give --unit-price."),
    ] = None,
    unit_price: Annotated[
        str | None,
        typer.Option(
            help="Column holding each line's price per item, instead of --amount: a line's "
            "amount is quantity x unit price; needs --quantity."
        ),
    ] = None,
    quantity: Annotated[str | None, typer.Option(help="Column holding item counts.")] = None,
    timestamp_format: Annotated[
        str | None,
        typer.Option(
            help="strftime format of the timestamps, e.g. %d.%m.%Y; needed for any other than "
            "ISO 8601 unless the column proves one (a day above 12 in d/m/Y or m/d/Y).",
            show_default="ISO 8601",
        ),
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
    timezone: Annotated[
        str,
        typer.Option(
            help="IANA zone that timestamps without one are read in, e.g. Europe/Berlin; "
            "timestamps with an offset keep it. All are stored in UTC."
        ),
    ] = "UTC",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="YYYY-MM-DD: the last day the log covers (the data's end); "
            "later timestamps are bad rows.",
            show_default="the last order; later than now is refused",
        ),
    ] = None,
    decimal_comma: Annotated[
        bool,
        typer.Option(
            "--decimal-comma", help="A CSV's numbers use a decimal comma: 12,50 reads 12.50."
        ),
    ] = False,
    order_id: Annotated[
        str | None,
        typer.Option(
            help="Column holding the shop's order id: rows sharing an id are the lines of one "
            "order (amounts and quantities summed; a line with another customer or time is a "
            "bad row); returns link to their order through it."
        ),
    ] = None,
    cancelled: Annotated[
        str | None,
        typer.Option(
            help="COLUMN (yes/no, true/false, 1/0) or COLUMN=VALUE[,VALUE]: rows it marks "
            "are cancellations, kept as returns."
        ),
    ] = None,
    cancelled_prefix: Annotated[
        str | None,
        typer.Option(
            help="Order ids starting with this (e.g. C) are cancellations; needs --order-id."
        ),
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
    """Import a shop's order log as the `orders` table of a raw dataset of its own.

    One row per order, or with --order-id one row per line of an order (as an invoice lists
    its products). Rows with a negative amount or quantity, or marked cancelled, become the
    `returns` table (refunds and cancellations), not orders."""
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
            unit_price=unit_price,
            quantity=quantity,
            on_bad_rows=on_bad_rows.value,
            timestamp_format=timestamp_format,
            encoding=encoding,
            delimiter=delimiter,
            sheet=sheet,
            timezone=timezone,
            as_of=as_of,
            decimal_comma=decimal_comma,
            order_id=order_id,
            cancelled=cancelled,
            cancelled_prefix=cancelled_prefix,
            truth=ctx.obj.truth_dir if out == ctx.obj.raw_dir else out.parent / "truth",
            replace=replace,
            force=force,
        )
    except NotOurs as exc:
        fail(exc)
    except OrderLogError as exc:
        said = str(exc)
        fail(said if said.startswith(str(file)) else f"{file}: {said}")
    returned = sum(result.returns.values())
    kinds = ", ".join(f"{n:,} {_RETURN_WORDS[r]}" for r, n in sorted(result.returns.items()))
    from_lines = f" from {result.lines:,} lines" if order_id is not None else ""
    console.print(
        f"imported {result.orders:,} orders"
        + (f" and {returned:,} {_plural(returned, 'return')} ({kinds})" if returned else "")
        + from_lines
        + f" into {out}"
        + (" (replacing what it held)" if result.replaced else ""),
        markup=False,
        soft_wrap=True,
    )
    form = (
        f"; timestamp form {result.timestamp_form} inferred from the column"
        if result.form_inferred
        else ""
    )
    console.print(
        f"timestamps without a zone read as {result.timezone}{form}", markup=False, soft_wrap=True
    )
    if result.duplicates:
        first = result.duplicates[0].describe(result.unit)
        console.print(
            f"left out {len(result.duplicates):,} exact duplicate {result.unit}(s) (e.g. {first})",
            markup=False,
            soft_wrap=True,
        )
    if result.bad_rows:
        rows = sorted({b.position for b in result.bad_rows})
        console.print(f"skipped {len(rows)} bad {result.unit}(s):")
        for b in result.bad_rows[:20]:
            console.print(f"  {b.describe(result.unit)}", markup=False, soft_wrap=True)
        if len(result.bad_rows) > 20:
            console.print(f"  ... and {len(result.bad_rows) - 20} more")
