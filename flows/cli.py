"""The `cadence` command line: one sub-command per stage, reading the workspace by default."""

from __future__ import annotations

import typer

from flows._warnings import quiet
from flows.data_cli import data_app
from flows.features_cli import features_app, features_demo
from flows.models_cli import evaluate, models_demo, promote_cmd, rollback_cmd, score, train
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
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("promote")(promote_cmd)
app.command("rollback")(rollback_cmd)
app.command("score")(score)


@app.callback()
def _main(ctx: typer.Context) -> None:
    """Read the settings once, when the command starts."""
    quiet()
    ctx.obj = Settings()


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the main job on the embedded default: world; features (built, applied,
    materialised); the repurchase model (trained, evaluated, promoted) and its scored list."""
    world_demo(ctx.obj)
    features_demo(ctx.obj)
    models_demo(ctx.obj)
