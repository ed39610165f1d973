"""The `cadence` command line: one sub-command per stage, reading the workspace by default."""

from __future__ import annotations

import warnings

import typer

from flows.data_cli import data_app
from flows.features_cli import features_app, features_demo
from flows.settings import Settings
from flows.world_cli import world_app, world_demo

app = typer.Typer(
    help="Cadence: repurchase prediction and predictive order merging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(world_app, name="world")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")


@app.callback()
def _main(ctx: typer.Context) -> None:
    """Read the settings once, when the command starts."""
    # Ibis 12 calls a DuckDB method that DuckDB 1.5 marks deprecated; users cannot act on it.
    warnings.filterwarnings("ignore", message="fetch_arrow_table", category=DeprecationWarning)
    ctx.obj = Settings()


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the main job on the embedded default: world, features (built, applied, materialised)."""
    world_demo(ctx.obj)
    features_demo(ctx.obj)
