"""`cadence world ...`: the simulated shop, the embedded default data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadence.cli._render import console, fail, progress

world_app = typer.Typer(help="The simulated shop: the embedded default data.", no_args_is_help=True)


@world_app.command("generate")
def generate(
    ctx: typer.Context,
    users: Annotated[
        int | None, typer.Option(help="Number of shoppers.", show_default="conf/world.yaml")
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Days simulated.", show_default="conf/world.yaml")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed; same seed, same bytes.", show_default="conf/world.yaml"),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD.", show_default="conf/world.yaml")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Raw tables folder.", show_default="the workspace's raw/")
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="Truth folder.", show_default="a 'truth' folder beside --out"),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace --out or --truth even if they hold other files."),
    ] = False,
) -> None:
    """Generate the simulated shop as Parquet tables, with its ground truth beside them."""
    from cadence.flows.steps import world as step
    from cadence.ingest import NotOurs

    settings = ctx.obj
    try:
        cfg = step.world_config(
            settings.decisions().world, users=users, days=days, seed=seed, start=start
        )
    except ValueError as exc:
        fail(f"world configuration: {exc}")
    out = out or settings.raw_dir
    truth = truth or out.parent / "truth"
    try:
        with progress("simulating") as report:
            manifest = step.generate(cfg, out, truth, force=force, report=report)
    except NotOurs as exc:
        fail(exc)
    console.print(f"wrote {out} and {truth}")
    print_summary(out, manifest)
    print_realism(out, truth, manifest)


def print_summary(raw: Path, manifest) -> None:
    from rich.table import Table

    from cadence.flows.steps import world as step

    figures = step.summary(raw, manifest)
    console.print(f"world {manifest.start.date()} .. {manifest.end.date()}, seed {manifest.seed}")
    table = Table()
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


def print_realism(raw: Path, truth: Path, manifest) -> None:
    """The realism table: the world's behaviour beside its targets and real shops' figures."""
    from rich.table import Table
    from rich.text import Text

    from cadence.flows.steps import world as step

    rows = step.realism(raw, truth, manifest)
    table = Table(title="realism: the world beside real shops")
    table.add_column("measure")
    table.add_column("world", justify="right")
    table.add_column("target")
    table.add_column("met", justify="center")
    table.add_column("n", justify="right")
    table.add_column("real logs")
    marks = {True: Text("yes", style="green"), False: Text("no", style="red"), None: Text("")}
    for r in rows:
        table.add_row(
            Text(r["measure"]),
            Text(r["value"]),
            Text(r["target"]),
            marks[r["met"]],
            f"{r['n']:,}",
            Text(r["reference"]),
        )
    console.print(table)
