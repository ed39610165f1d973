"""`cadence route ...` and the routing branches of `train / promote / rollback`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cadence.cli._render import console, fail, progress

route_app = typer.Typer(
    help="Order routing: which warehouse or store ships each order, and by whom.",
    no_args_is_help=True,
)

ROWS = (
    ("orders", "orders", "{:,}"),
    ("cost_total", "cost, total", "{:,.0f}"),
    ("cost_per_order", "cost per order", "{:.3f}"),
    ("cost_vs_nearest", "against nearest", "{:+.1%}"),
    ("gap_to_clairvoyant", "against clairvoyant", "{:+.1%}"),
    ("next_day_rate", "next-day rate", "{:.1%}"),
    ("on_time_rate", "on time", "{:.1%}"),
    ("mean_delivery_days", "mean delivery days", "{:.2f}"),
    ("split_rate", "split rate", "{:.1%}"),
    ("capacity_violations", "capacity violations", "{:,}"),
    ("stock_violations", "stock violations", "{:,}"),
    ("unassigned", "unassigned", "{:,}"),
)


ModelUri = Annotated[
    str | None,
    typer.Option("--model", help="Model URI.", show_default="the champion, else the challenger"),
]


def _errors() -> tuple[type[Exception], ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException, ValueError)


def strategy_table(out: dict[str, Any]):
    """One column per strategy, one row per measure: fits a terminal of 80 columns."""
    from rich.table import Table

    first, last = out["days"]
    table = Table(title=f"routing replay {first} to {last} ({out['model']})")
    table.add_column("")
    for name in out["strategies"]:
        table.add_column(name, justify="right")
    for key, head, fmt in ROWS:
        cells = [row.get(key) for row in out["strategies"].values()]
        table.add_row(head, *("" if c is None else fmt.format(c) for c in cells))
    return table


def ab_lines(ab: dict[str, Any]) -> list[str]:
    (a, na), (b, nb) = ab["arms"].items()
    lines = [f"A/B: orders randomised, {a} {na:,} / {b} {nb:,}"]
    for metric in ("cost_per_order", "next_day_rate"):
        m = ab[metric]
        lo, hi = m["ci95"]
        lines.append(
            f"  {metric.replace('_', ' ')}: {b} {m[b]:.4f} - {a} {m[a]:.4f} = "
            f"{m['difference']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}]"
        )
    return lines


def evaluate(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, help="Held-out days to replay (the latest).")] = 7,
    model: ModelUri = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay held-out days through nearest, greedy, optimal and clairvoyant routing, each
    choice priced and timed by the simulated world's own truth."""
    from cadence.flows.steps import routing as step

    settings = ctx.obj
    try:
        with progress("replaying") as report:
            out = step.evaluate(settings, settings.decisions(), days, model, report=report)
    except _errors() as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    console.print(strategy_table(out))
    for line in ab_lines(out["ab"]):
        console.print(line, markup=False)
    a = out["audit"]
    console.print(
        f"routing audit: largest fall in a group's next-day rate, nearest to optimal: "
        f"{a['max_next_day_drop']:.3f} ({a['worst_group']})",
        markup=False,
    )
    e = out["eta"]
    if e["inside"] is not None:
        console.print(
            f"arrival windows ({e['quantiles'][0]:.0%} to {e['quantiles'][1]:.0%} quantile, "
            f"nominal {e['nominal']:.0%}, mean {e['mean_hours']:.1f} h): {e['inside']:.1%} of "
            f"{e['parcels']:,} optimal parcels arrived inside, {e['early']:.1%} early, "
            f"{e['late']:.1%} late",
            markup=False,
        )
    for row in out["extrapolation"]:
        console.print(
            f"  models against the truth where the rule chose the node {row['rule_share']} of "
            f"the time: {row['options']:,} options, cost MAE {row['cost_mae']:.3f}, "
            f"90% delivery quantile covers {row['days_q90_coverage']:.1%}",
            markup=False,
        )


def train(settings) -> None:
    from cadence.flows.steps import routing as step

    try:
        with progress("training routing") as report:
            out = step.train(settings, settings.decisions(), report=report)
    except _errors() as exc:
        fail(exc)
    m = out["metrics"]
    console.print(
        f"held-out parcels {out['held_out_parcels']:,} (from {out['holdout_from']}): "
        f"cost MAE {m.get('cost_mae', float('nan')):.3f}, "
        f"90% delivery quantile covers {m.get('days_q90_coverage', float('nan')):.1%}, "
        f"damage AUC {m.get('damage_auc', float('nan')):.3f}",
        markup=False,
    )
    for row in out["extrapolation"]:
        console.print(
            f"  node chosen by the rule {row['rule_share']} of the time for that city: "
            f"{row['parcels']:,} parcels, cost MAE {row['cost_mae']:.3f}",
            markup=False,
        )
    console.print(
        f"registered {out['name']} v{out['version']} as challenger "
        f"(run {out['run_id']}; {out['seconds']:.0f} s)"
    )


route_app.command("evaluate")(evaluate)


def promote(settings, reason: str | None) -> None:
    from cadence.cli.models import print_gates
    from cadence.flows.steps import routing as step

    try:
        with progress("running the routing gates") as report:
            promoted, results, version = step.promote(
                settings, settings.decisions(), reason, report=report
            )
    except _errors() as exc:
        fail(exc)
    print_gates(results)
    if not promoted:
        fail(f"routing v{version} stays challenger: a gate failed", code=1)
    console.print(f"[green]routing v{version} is champion[/green]")


def rollback(settings, reason: str) -> None:
    from cadence.flows.steps import routing as step

    try:
        old, new = step.rollback(settings, reason)
    except _errors() as exc:
        fail(exc)
    console.print(f"champion routing: v{old} -> v{new} ({reason})")


def plan(
    ctx: typer.Context,
    date: Annotated[str, typer.Option("--date", help="The day to plan, YYYY-MM-DD.")],
    model: ModelUri = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Plan a day's orders with the optimal strategy: node, carrier and wave per parcel, the
    predicted cost and days, and the reason in words (routing/plan-DATE.parquet and .csv)."""
    import datetime as dt

    from cadence.flows.steps import routing as step

    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        fail(f"--date {date!r}: expected YYYY-MM-DD")
    settings = ctx.obj
    try:
        with progress("planning") as report:
            out = step.plan_day(settings, settings.decisions(), day, model, report=report)
    except _errors() as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    console.print(
        f"{out['date']}: {out['orders']:,} orders in {out['parcels']:,} parcels, predicted cost "
        f"{out['predicted_cost']:,.2f} ({out['model']}; {out['solver']}); "
        f"{len(out['unassigned'])} unassigned",
        markup=False,
    )
    for u in out["unassigned"]:
        console.print(f"  order {u['order_id']}: {u['reason']}", markup=False)
    for f in out["files"]:
        console.print(f"plan: {f}", markup=False)


route_app.command("plan")(plan)


def forecast_command(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, help="Held-out days to replay (the latest).")] = 28,
    model: ModelUri = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The 72-hour regional demand forecast's error on held-out days (beside last week's mean),
    and its pre-positioning transfers replayed: optimal routing with and without them."""
    from cadence.flows.steps import routing as step

    settings = ctx.obj
    try:
        with progress("forecasting") as report:
            out = step.prepositioning(settings, settings.decisions(), days, model, report=report)
    except _errors() as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    f = out["forecast"]
    for name in ("forecast", "naive"):
        m = f[name]
        console.print(
            f"{name} ({f['horizon_days']} days ahead, {m['origins']} origins, {m['pairs']:,} "
            f"region x SKU pairs): WAPE {m['wape']:.3f}, MAE {m['mae']:.3f} units",
            markup=False,
        )
    p = out["prepositioning"]
    console.print(
        f"transfers {out['days'][0]} to {out['days'][1]}: {p['transfers_units']:,} units moved "
        f"for {p['transfer_cost']:,.2f}; shipping saved {p['shipping_saved']:,.2f}, net "
        f"{p['net_saving']:+,.2f} over {p['orders']:,} orders; cost per order "
        f"{p['cost_per_order_without']:.3f} -> {p['cost_per_order_with']:.3f}, next day "
        f"{p['next_day_without']:.1%} -> {p['next_day_with']:.1%}",
        markup=False,
    )


route_app.command("forecast")(forecast_command)


def stock_command(
    ctx: typer.Context,
    date: Annotated[
        str | None,
        typer.Option("--date", help="The snapshot's day, YYYY-MM-DD.", show_default="the latest"),
    ] = None,
) -> None:
    """Set the service's stock view (every node's on-hand units per SKU) from the data's
    inventory snapshot; units held by routed orders stay held."""
    import datetime as dt

    from cadence.flows.steps import routing as step
    from cadence.serving._db import DatabaseError

    day = None
    if date is not None:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            fail(f"--date {date!r}: expected YYYY-MM-DD")
    try:
        out = step.load_stock(ctx.obj, day)
    except (DatabaseError, ValueError) as exc:
        fail(exc)
    console.print(
        f"stock view set from the {out['date']} snapshot: {out['rows']:,} rows"
        + (f"; {len(out['short'])} below what routed orders hold" if out["short"] else ""),
        markup=False,
    )


route_app.command("stock")(stock_command)
