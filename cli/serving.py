"""`cadence serve` (the merge service) and `cadence keys` (its API keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from cadence.cli._render import console, fail

keys_app = typer.Typer(
    help="The merge service's API keys (hashed at rest; a key is shown once).",
    no_args_is_help=True,
)
ROLES_HELP = "service (offers, events, confirm, cancel), marketing (lists), reviewer (audit log), "
ROLES_HELP += "admin (keys, configuration)"


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    today: Annotated[
        str | None,
        typer.Option(
            help="The service's today: YYYY-MM-DD, or 'scores' for the latest list's as-of "
            "date (a simulated shop's own today); the clock runs on from it.",
            show_default="the wall clock",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes (more than 1: PostgreSQL only).")
    ] = 1,
) -> None:
    """Run the merge service (FastAPI on uvicorn): offers, consent, events, exits. The
    database is migrated to the latest schema first; OpenAPI at /docs."""
    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError

    settings = ctx.obj
    console.print(f"merge service on http://{host}:{port} (OpenAPI: /docs)", markup=False)
    try:
        step.serve(settings, settings.decisions(), host, port, today, workers)
    except (DatabaseError, ValueError) as exc:
        fail(exc)


def consolidate(
    ctx: typer.Context,
    date: Annotated[
        str | None,
        typer.Option("--date", help="The ship date, YYYY-MM-DD.", show_default="today (UTC)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the read-out as JSON.")] = False,
) -> None:
    """Plan a ship date's orders in the service database: exits checked again, confirmed
    orders merged into fuller parcels and fewer dispatch batches; read out against the same
    orders shipped unmerged."""
    import datetime as dt
    import json

    from rich.table import Table

    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError
    from cadence.serving._plan import LogisticsMissing
    from cadence.serving._records import ServiceError

    try:
        day = dt.date.fromisoformat(date) if date else dt.datetime.now(dt.UTC).date()
    except ValueError:
        fail(f"--date {date}: expected YYYY-MM-DD")
    settings = ctx.obj
    try:
        out = step.consolidate(settings, settings.decisions(), day)
    except (DatabaseError, LogisticsMissing, ValueError) as exc:
        fail(exc)
    except ServiceError as exc:
        fail(exc.message)
    if as_json:
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"plan {out['plan_id']} for {day}: merged against unmerged")
    for column in ("", "unmerged", "merged"):
        table.add_column(column, justify="right" if column else "left")
    rows = ("orders", "parcels", "batches", "batches_per_node_day", "cost_per_order")
    for row in (*rows, "co2_per_order"):
        b, m = out["baseline"][row], out["merged"][row]
        shown = (f"{b:,}", f"{m:,}") if isinstance(b, int) else (f"{b:.3f}", f"{m:.3f}")
        table.add_row(row.replace("_", " "), *shown)
    console.print(table)
    exits = out["exits"]
    if exits:
        reasons = sorted({e["reason"] for e in exits})
        console.print(f"{len(exits)} order(s) left the merge: {', '.join(reasons)}")


@keys_app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help=ROLES_HELP)],
    note: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Make a key; the key is the last word of the last line printed, shown only this once."""
    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError

    try:
        key = step.create_key(ctx.obj, role, note)
    except (DatabaseError, ValueError) as exc:
        fail(exc)
    key_id = key.split("_")[1]
    console.print(f"key {key_id} with role {role}; it is shown only now, keep it safe:")
    console.print(key, markup=False, highlight=False, soft_wrap=True)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id.")]
) -> None:
    """Revoke a key by its id (the word after `cadence_` in the key)."""
    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError

    try:
        done = step.revoke_key(ctx.obj, key_id)
    except DatabaseError as exc:
        fail(exc)
    if not done:
        fail(f"no live key {key_id!r}")
    console.print(f"key {key_id} revoked", markup=False)


merge_app = typer.Typer(help="The merge campaign on the simulated world.", no_args_is_help=True)


@merge_app.command("simulate")
def simulate(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=120, help="Days the campaign runs.")] = 28,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random groups.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the read-out as JSON.")] = False,
) -> None:
    """Run a merge campaign on the simulated world: each day, offers to the treatment group's
    eligible shoppers (the world decides who accepts, orders early, cancels or exits), then
    consolidation. Prints the same orders merged against unmerged, and treatment minus
    control with 95% intervals."""
    import json

    from cadence.cli._render import progress
    from cadence.flows.steps import merge as step

    settings = ctx.obj
    try:
        with progress("merge campaign") as report:
            out = step.simulate(settings, settings.decisions(), days, seed=seed, report=report)
    except ValueError as exc:
        fail(exc)
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    render_campaign(out)


def render_campaign(out: dict) -> None:
    """The campaign's read-out as two tables and its check."""
    from rich.table import Table

    w = out["window"]
    table = Table(title=f"merge campaign: {w['days']} days from {w['start']}, same orders")
    for column in ("", "unmerged", "merged", "change"):
        table.add_column(column, justify="right" if column else "left")
    rows = ("orders", "parcels", "batches_per_node_day", "cost_per_order", "co2_per_order")
    for row in (*rows, "late_rate"):
        b, m = out["baseline"][row], out["merged"][row]
        change = out["change"].get(row)
        shown = (f"{b:,}", f"{m:,}") if isinstance(b, int) else (f"{b:.3f}", f"{m:.3f}")
        table.add_row(row.replace("_", " "), *shown, "" if change is None else f"{change:+.1%}")
    console.print(table)
    ab = out["ab"]
    groups = Table(
        title=f"treatment ({ab['shoppers']['treatment']:,}) against control "
        f"({ab['shoppers']['control']:,}), from each shopper's first eligible day"
    )
    for column in ("", "treatment", "control", "difference", "95% interval"):
        groups.add_column(column, justify="right" if column else "left")
    for key in ("orders_per_shopper", "cost_per_order"):
        r = ab[key]
        lo, hi = r["interval"]
        groups.add_row(
            key.replace("_", " "),
            f"{r['treatment']:.4f}",
            f"{r['control']:.4f}",
            f"{r['difference']:+.4f}",
            f"[{lo:+.4f}, {hi:+.4f}]",
        )
    console.print(groups)
    o = out["offers"]
    console.print(
        f"offers sent {o['sent']:,}, accepted {o['accepted']:,}, cancelled {o['cancelled']:,}; "
        f"their orders {o['orders']:,}, merged {o['merged']:,}, exits {o['exits']}; "
        f"merged without confirmation: {out['merged_without_confirmation']}",
        markup=False,
        highlight=False,
    )
