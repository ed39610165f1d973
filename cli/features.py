"""`cadence features ...`: list the catalogue, build features, register them with Feast."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from cadence.cli._render import console, err, fail, progress

features_app = typer.Typer(help="User and node features.", no_args_is_help=True)


class Engine(enum.StrEnum):
    duckdb = "duckdb"
    spark = "spark"


class Service(enum.StrEnum):
    repurchase_v1 = "repurchase_v1"
    routing_v1 = "routing_v1"


@features_app.command("list")
def list_features(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the feature catalogue."""
    import json

    from rich.table import Table

    from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES

    rows = [
        {
            "name": f.name,
            "family": f.family,
            "entity": fam.entity,
            "window_days": f.window,
            "dtype": f.dtype,
            "description": f.description,
        }
        for fam in (*USER_FAMILIES, *NODE_FAMILIES)
        for f in fam.features
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} features")
    for col in ("name", "family", "window", "type", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], r["family"], str(r["window_days"] or ""), r["dtype"], r["description"]
        )
    console.print(table)


@features_app.command("docs")
def docs(
    out: Annotated[Path, typer.Option(help="Where to write the catalogue.")] = Path(
        "docs/features.md"
    ),
) -> None:
    """Regenerate docs/features.md from the catalogue."""
    from cadence.features import catalogue_markdown

    if not out.parent.is_dir():
        fail(f"--out {out}: folder {out.parent} does not exist")
    out.write_text(catalogue_markdown())
    console.print(f"wrote {out}")


@features_app.command("build")
def build(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option(help="Raw tables.", show_default="the workspace's raw/")
    ] = None,
    snapshots: Annotated[
        str | None,
        typer.Option(
            help="START:END:7d (every 7 days from START to END) or d1,d2,... (ISO dates).",
            show_default="weekly grid + the data's end",
        ),
    ] = None,
    engine: Annotated[Engine, typer.Option(help="Where the formulas run.")] = Engine.duckdb,
) -> None:
    """Compute every feature as of each snapshot (events strictly before it)."""
    from cadence.features import FeatureInputError, parse_snapshots
    from cadence.flows.steps import features as step

    settings = ctx.obj
    raw = data or settings.raw_dir
    try:
        conf = settings.decisions().features
        try:
            snaps = parse_snapshots(snapshots) if snapshots is not None else None
        except ValueError as exc:
            raise ValueError(f"--snapshots {snapshots}: {exc}") from exc
        if snaps == []:
            raise ValueError(f"--snapshots {snapshots!r}: no dates in it")
        with progress(f"building features with {engine.value}") as report:
            manifest = step.build_features(
                raw, settings.features_dir, snaps, engine.value, conf, report=report
            )
    except (FeatureInputError, ValueError) as exc:
        fail(exc)
    console.print(
        f"built {manifest.user_features} user features x {manifest.rows:,} rows "
        f"({len(manifest.snapshots)} snapshots, {engine.value}) and "
        f"{manifest.node_features} node features into {settings.features_dir}"
    )
    if manifest.families_left_out:
        console.print(
            f"left out (their tables are missing): {', '.join(manifest.families_left_out)}"
        )


@features_app.command("apply")
def apply_cmd(ctx: typer.Context) -> None:
    """Make the Feast registry match the build: entities, one view per family built, the
    feature services (views of families the build left out are removed)."""
    from cadence.flows.steps import features as step

    s = ctx.obj
    with console.status("feast apply"):
        done = _or_fail(
            lambda: step.apply(s.features_dir, s.feast_dir, s.online_store, lists_dir=s.lists_dir)
        )
    console.print(f"registered {len(done.names)} Feast objects in {s.feast_dir}")
    if done.removed:
        console.print(f"removed (not in this build): {', '.join(done.removed)}")


@features_app.command("materialize")
def materialize_cmd(ctx: typer.Context) -> None:
    """Load the latest snapshot of every view into the online store."""
    from cadence.flows.steps import features as step

    s = ctx.obj
    with console.status(f"materialising to {s.online_store}"):
        end = _or_fail(
            lambda: step.materialize(s.features_dir, s.feast_dir, s.online_store, raw=s.raw_dir)
        )
    console.print(f"materialised features as of {end.isoformat()} to {s.online_store}")


@features_app.command("online")
def online_cmd(
    ctx: typer.Context,
    users: Annotated[list[str], typer.Argument(help="User ids.")],
    service: Annotated[Service, typer.Option(help="Feature service.")] = Service.repurchase_v1,
) -> None:
    """Read a feature service's online vector for some users (as JSON). An id with no features
    in the online store is named on stderr and left out; none found at all exits 2."""
    from cadence.flows.steps import features as step

    s = ctx.obj
    if service is Service.routing_v1:
        fail("routing_v1 is keyed by node, not user; it is read by the routing service")
    frame = _or_fail(
        lambda: step.online(s.features_dir, s.feast_dir, s.online_store, service.value, users)
    )
    missing = step.absent(frame)
    if len(missing) == frame.user_id.nunique():
        fail(
            f"no features in the online store for {', '.join(repr(u) for u in missing)}: "
            "unknown ids, or not materialised (`cadence features materialize`)"
        )
    for user in missing:
        err().print(
            f"no features for user {user!r} in the online store: unknown id, or not materialised",
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    typer.echo(frame[~frame.user_id.isin(missing)].to_json(orient="records", indent=2))


def _or_fail(call):
    """Runs a Feast step; a missing build or an unregistered service exits 2 with its name."""
    try:
        return call()
    except ValueError as exc:
        fail(exc)
    except Exception as exc:  # Feast raises its own errors for unregistered objects
        if type(exc).__module__.startswith("feast"):
            fail(f"feast: {exc}; run `cadence features apply` first")
        raise
