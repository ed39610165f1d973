"""The `cadence` command: one sub-command per stage, in pipeline order, plus flows and status."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from cadence.cli import models
from cadence.cli._render import fail
from cadence.cli.audits import audit
from cadence.cli.data import data_app
from cadence.cli.features import features_app
from cadence.cli.flows import demo, deploy, run, run_epilog
from cadence.cli.routing import route_app
from cadence.cli.serving import consolidate, keys_app, merge_app, serve
from cadence.cli.status import status
from cadence.cli.world import world_app

# Commands as the pipeline runs them: data in, features, models, lists; then flows and status.
ORDER = (
    "world",
    "data",
    "features",
    "train",
    "evaluate",
    "audit",
    "promote",
    "rollback",
    "score",
    "route",
    "serve",
    "consolidate",
    "merge",
    "keys",
    "run",
    "deploy",
    "status",
    "demo",
)


class _PipelineOrder(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app = typer.Typer(
    cls=_PipelineOrder,
    help="Cadence: repurchase prediction and predictive order merging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: Rich markup would eat "[...]" and turn ":end:" into an emoji.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(world_app, name="world")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.command("train")(models.train)
app.command("evaluate")(models.evaluate)
app.command("audit")(audit)
app.command("promote")(models.promote)
app.command("rollback")(models.rollback)
app.command("score")(models.score)
app.add_typer(route_app, name="route")
app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=run_epilog(),
)(run)
app.command("serve")(serve)
app.command("consolidate")(consolidate)
app.add_typer(merge_app, name="merge")
app.add_typer(keys_app, name="keys")
app.command("deploy")(deploy)
app.command("status")(status)
app.command("demo")(demo)


def _version(value: bool) -> None:
    if value:
        from cadence import __version__

        typer.echo(f"cadence {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show the libraries' own logs instead of the workspace log."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Read the settings once, when the command starts; route library chatter to the log."""
    from pydantic import ValidationError

    from cadence.cli._logs import route, stderr_to_log
    from cadence.flows.conf import ConfError
    from cadence.flows.settings import Settings

    try:
        settings = Settings()
        settings.decisions().check()
    except ValidationError as exc:
        fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))
    except ConfError as exc:
        fail(exc)
    ctx.obj = settings
    route(settings.log_file, verbose=verbose)
    stderr_to_log(ctx)


def main() -> None:
    """The console script."""
    app()
