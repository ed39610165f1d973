"""`cadence train / evaluate / promote / rollback / score`: the repurchase model's life cycle."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import typer

from cadence.cli._render import console, fail, progress


class Target(enum.StrEnum):
    repurchase = "repurchase"
    routing = "routing"


Horizon = Annotated[
    int | None,
    typer.Option(
        help="Days ahead; one of conf/models.yaml horizons_days.",
        show_default="conf/models.yaml horizon_days",
        min=1,
    ),
]


REPORTED = (
    "roc_auc",
    "pr_auc",
    "brier",
    "ece",
    "lift_top_decile",
    "timing_mae_days",
    "timing_mae_days_cycle",
    "interval_coverage",
)


SCORERS = ("model", "bgnbd", "rule", "oracle")


def report_table(report: dict[str, Any], title: str):
    """One row per scorer the report holds (its other entries have tables of their own)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("scorer")
    for k in REPORTED:
        table.add_column(k.replace("_", " "), justify="right")
    for name in SCORERS:
        if isinstance(m := report.get(name), dict):
            table.add_row(name, *(f"{m[k]:.3f}" if k in m else "" for k in REPORTED))
    return table


def _ci(b: dict[str, float], signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    return f"{b['estimate']:{f}} [{b['low']:{f}}, {b['high']:{f}}]"


def segment_table(segments: dict[str, dict], title: str):
    """AUC and ECE of every scorer in each segment; a segment without them says why."""
    from rich.table import Table

    scorers = [s for s in SCORERS if any(s in seg for seg in segments.values())]
    table = Table(title=title)
    for col in ("segment", "rows", "buyers"):
        table.add_column(col, justify="left" if col == "segment" else "right")
    for s in scorers:
        table.add_column(f"{s} AUC", justify="right")
        table.add_column(f"{s} ECE", justify="right")
    table.add_column("note")
    for name, seg in segments.items():
        cells = []
        for s in scorers:
            m = seg.get(s, {})
            cells += [f"{m['roc_auc']:.3f}" if m else "", f"{m['ece']:.3f}" if m else ""]
        table.add_row(name, f"{seg['n']:,}", f"{seg['buyers']:,}", *cells, seg.get("note", ""))
    return table


def interval_table(intervals: dict[str, Any], title: str):
    """Each scorer's AUC and ECE, and the model's AUC lead over each baseline, with their
    bootstrap intervals."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("estimate [95% interval]", justify="right")
    scorers = [s for s in SCORERS if s in intervals["roc_auc"]]
    for name in scorers:
        table.add_row(f"AUC {name}", _ci(intervals["roc_auc"][name]))
    for name, b in intervals["roc_auc_difference"].items():
        table.add_row(f"AUC {name.replace('-', ' - ')}", _ci(b, signed=True))
    for name in scorers:
        table.add_row(f"ECE {name}", _ci(intervals["ece"][name]))
    return table


def backtest_tables(out: dict[str, Any]):
    """Per window and pooled: each scorer's AUC and the model's lead, then each ECE."""
    from rich.table import Table

    kinds = {"btyd": "BG/NBD", "xgboost": "hybrid"}
    rows = [
        (
            f"{w['window']}: {w['test_window']} ({kinds[w['propensity']]})",
            w["n_test"],
            w["intervals"],
        )
        for w in out["windows"]
    ]
    rows.append(("pooled", out["pooled"]["n_test"], out["pooled"]["intervals"]))
    first = rows[-1][2]
    scorers = [s for s in SCORERS if s in first["roc_auc"]]
    diffs = list(first["roc_auc_difference"])
    auc = Table(title=f"backtest, {len(out['windows'])} windows: AUC [95% interval]")
    ece = Table(title=f"backtest, {len(out['windows'])} windows: ECE [95% interval]")
    for t in (auc, ece):
        t.add_column("test window")
        t.add_column("rows", justify="right")
    for s in scorers:
        auc.add_column(s, justify="right")
        ece.add_column(s, justify="right")
    for d in diffs:
        auc.add_column(d.replace("-", " - "), justify="right")
    for label, n, iv in rows:
        auc.add_row(
            label,
            f"{n:,}",
            *(_ci(iv["roc_auc"][s]) if s in iv["roc_auc"] else "" for s in scorers),
            *(_ci(iv["roc_auc_difference"][d], True) for d in diffs),
        )
        ece.add_row(
            label, f"{n:,}", *(_ci(iv["ece"][s]) if s in iv["ece"] else "" for s in scorers)
        )
    return auc, ece


def selection_line(kind: str, selection: dict[str, Any] | None) -> str:
    """Which propensity the model carries and why, in one line."""
    if not selection:
        return ""
    who = "BG/NBD itself" if kind == "btyd" else "the XGBoost hybrid"
    return f"propensity: {who}: {selection['reason']}"


VALUE_MODELS = {
    "bgnbd_gamma_gamma": "BG/NBD x Gamma-Gamma",
    "cadence_value": "Cadence (XGBoost)",
    "recent_spend": "rule: last window's spend",
}


def value_tables(value: dict[str, Any]) -> list:
    """Expected spend against realised spend per horizon and model, and the 90-day range's
    coverage; a horizon or model the data could not judge says why."""
    from rich.table import Table

    if "skipped" in value:
        return [f"customer value: not judged: {value['skipped']}"]
    table = Table(title="customer value: expected vs realised spend per shopper")
    for col in ("horizon", "model", "MAE", "Spearman", "predicted", "realised", "note"):
        table.add_column(col, justify="left" if col in ("horizon", "model", "note") else "right")
    out: list = [table]
    for key, entry in value["horizons"].items():
        if entry["status"] != "ok":
            table.add_row(key, "", "", "", "", "", entry["reason"])
            continue
        key = f"{key} after {entry['window'].split('..')[0]}"
        for name, m in entry["models"].items():
            label = VALUE_MODELS.get(name, name)
            if "skipped" in m:
                table.add_row(key, label, "", "", "", "", m["skipped"])
                continue
            table.add_row(
                key,
                label,
                f"{m['mae']:.2f}",
                f"{m['spearman']:.3f}",
                f"{m['predicted_total']:,.0f}",
                f"{m['realised_total']:,.0f}",
                "",
            )
        iv = entry.get("interval") or {}
        if "skipped" in iv:
            out.append(f"{entry['window']}: the spend range was not judged: {iv['skipped']}")
        elif iv:
            parts = [
                f"{kind} {iv[kind]['coverage']:.0%} (buyers {iv[kind]['buyers']['coverage']:.0%})"
                for kind in ("uncalibrated", "calibrated")
                if iv.get(kind)
            ]
            out.append(
                f"{entry['window']}: the spend range ({iv['level']:.0%} nominal) held the "
                "realised spend of: " + "; ".join(parts)
            )
    return out


def _context(settings, horizon: int | None = None, *, training: bool = False):
    from cadence.cli._logs import after_heavy_imports
    from cadence.flows.steps import models as step

    ctx = step.context(settings, settings.decisions(), horizon, training=training)
    after_heavy_imports()
    return ctx


def _errors() -> tuple[type[Exception], ...]:
    """What a user can fix: a missing input, too little data, an unknown model version."""
    from mlflow.exceptions import MlflowException

    return (MlflowException, ValueError)


def train(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    horizon: Horizon = None,
) -> None:
    """Train on the workspace's features, log the run to MLflow, register a challenger."""
    from cadence.flows.steps import models as step

    if what is Target.routing:
        from cadence.cli.routing import train as train_routing

        if horizon is not None:
            fail("--horizon applies to repurchase models, not routing")
        train_routing(ctx.obj)
        return
    try:
        c = _context(ctx.obj, horizon, training=True)
        with progress("training") as report:
            out = step.train(c, report=report)
    except _errors() as exc:
        fail(exc)
    console.print(report_table(out["report"], f"test window {out['test_window']}"))
    if line := selection_line(out["propensity"], out["selection"]):
        console.print(line)
    for item in value_tables(out["value"]):
        console.print(item)
    laps = ", ".join(f"{k} {v:.0f} s" for k, v in out["stages"].items())
    console.print(
        f"registered {out['name']} v{out['version']} as challenger "
        f"(run {out['run_id']}; {out['seconds']:.0f} s: {laps})"
    )


def evaluate(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model URI.", show_default="the most recently trained version"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    horizon: Horizon = None,
    backtest: Annotated[
        int | None,
        typer.Option(
            "--backtest",
            metavar="N",
            help="Instead, a rolling-origin backtest over the N latest test windows, retraining "
            "for each (nothing is registered).",
            show_default="none: evaluate one model",
        ),
    ] = None,
    resamples: Annotated[
        int,
        typer.Option(
            "--resamples", help="Customer resamples behind each bootstrap interval.", min=20
        ),
    ] = 200,
) -> None:
    """Evaluate a model and the baselines (and the oracle, on simulated data) on its test slice,
    by segment and with 95% bootstrap intervals; or backtest over several windows."""
    from cadence.flows.steps import models as step

    if what is Target.routing:
        fail("routing is evaluated by replaying held-out days: `cadence route evaluate --days N`")
    settings = ctx.obj
    try:
        if backtest is not None:
            if model is not None:
                fail("--backtest retrains a model for each window; --model does not apply")
            with progress("backtesting") as report:
                out = step.backtest(
                    settings,
                    settings.decisions(),
                    horizon,
                    backtest,
                    resamples=resamples,
                    report=report,
                )
        else:
            with console.status("evaluating"):
                out = step.evaluate(_context(settings, horizon), model, resamples=resamples)
    except _errors() as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if backtest is not None:
        for table in backtest_tables(out):
            console.print(table)
        console.print(
            f"{out['horizon_days']}-day horizon; pooled over {out['pooled']['customers']:,} "
            f"customers; {out['seconds']:.0f} s"
        )
        return
    title = f"{out['model_uri']}: {out['n_test']:,} test rows, {out['test_window']}"
    console.print(report_table(out, title))
    if line := selection_line(out["propensity"], out["selection"]):
        console.print(line)
    console.print(segment_table(out["segments"], "by segment (as of each snapshot)"))
    iv = out["intervals"]
    console.print(
        interval_table(
            iv, f"{iv['resamples']} resamples of {iv['customers']:,} customers (seed {iv['seed']})"
        )
    )
    for item in value_tables(out["value"]):
        console.print(item)


def print_gates(results: list) -> None:
    for r in results:
        mark = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {r.gate}: {r.detail}")


def promote(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    reason: Annotated[str | None, typer.Option(help="A note recorded with the decision.")] = None,
    horizon: Horizon = None,
) -> None:
    """Run every gate on the challenger; make it champion only if all pass (exit 1 if not)."""
    from cadence.flows.steps import models as step

    if what is Target.routing:
        from cadence.cli.routing import promote as promote_routing

        if horizon is not None:
            fail("--horizon applies to repurchase models, not routing")
        promote_routing(ctx.obj, reason)
        return

    try:
        with console.status("running the gates"):
            promoted, results, version = step.promote(_context(ctx.obj, horizon), reason)
    except _errors() as exc:
        fail(exc)
    print_gates(results)
    if not promoted:
        fail(f"v{version} stays challenger: a gate failed", code=1)
    console.print(f"[green]v{version} is champion[/green]")


def rollback(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    reason: Annotated[str, typer.Option(help="Why (recorded as a tag).")],
    horizon: Horizon = None,
) -> None:
    """Move `champion` back to the version the current champion replaced."""
    from cadence.flows.steps import models as step

    if what is Target.routing:
        from cadence.cli.routing import rollback as rollback_routing

        rollback_routing(ctx.obj, reason)
        return

    try:
        c = _context(ctx.obj, horizon)
        old, new = step.rollback(c, reason)
    except _errors() as exc:
        fail(exc)
    console.print(f"champion {c.name}: v{old} -> v{new} ({reason})")


STORES = ("feast", "redis")  # the packages whose errors loading the online store may raise


def score(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="YYYY-MM-DD.", show_default="the latest snapshot"),
    ] = None,
    lead_days: Annotated[
        int | None,
        typer.Option(help="Contact this many days before.", show_default="conf/models.yaml", min=0),
    ] = None,
    horizon: Horizon = None,
    online: Annotated[
        bool,
        typer.Option(
            "--online/--no-online",
            help="Also load the list into the online store (its scores view), as the score "
            "flow does; --no-online writes the list alone.",
        ),
    ] = True,
) -> None:
    """Score the active shoppers with the champion into a new folder,
    lists/<model>/<as-of>_<run time>/ (scores.csv, scores.parquet, README.md, schema.json),
    point lists/<model>/latest at it and, unless --no-online, load it into the online store.
    Earlier lists are never overwritten."""
    import pandas as pd

    from cadence.flows.steps import models as step

    when = None
    if as_of:
        try:
            when = pd.Timestamp(as_of, tz="UTC")
        except ValueError:
            fail(f"--as-of {as_of}: not a date (YYYY-MM-DD)")
    settings = ctx.obj
    try:
        with console.status("scoring"):
            c = _context(settings, horizon)
            target, info = step.score(c, settings.decisions(), when, lead_days)
    except _errors() as exc:
        fail(exc)
    print_score(target, info)
    if not online:
        return
    try:
        with console.status(f"loading the list into {settings.online_store}"):
            info["online"] = step.publish_scores(settings, info["name"])
    except Exception as exc:
        # A bad store setting, or Feast's and Redis's own errors: the list stays written.
        if not isinstance(exc, ValueError) and type(exc).__module__.split(".")[0] not in STORES:
            raise
        fail(
            f"the list is written, but loading it into the online store "
            f"({settings.online_store}) failed: {str(exc).rstrip('.')}; "
            "`cadence score --no-online` skips it"
        )
    console.print(f"loaded into the online store ({settings.online_store}) as of {info['online']}")


def print_score(target, info: dict[str, Any]) -> None:
    b = info["bands"]
    console.print(
        f"scored {info['users']:,} active users as of {info['as_of'][:10]} with {info['model']}: "
        f"high {b['high']:,}, medium {b['medium']:,}, low {b['low']:,}; "
        f"{info['expected_orders_in_horizon']:,.0f} orders expected within "
        f"{info['horizon_days']} days"
    )
    if info["consent_log"]:
        console.print(
            f"left out {info['withdrawn_consent']:,} who withdrew consent to profiling or contact"
        )
    else:
        console.print("no consent log in the raw data: nobody was left out for consent")
    if info["exact_zeros"]:
        console.print(
            f"{info['exact_zeros']:,} shoppers score exactly 0: the {info['calibration']} "
            "calibration found no buyer among the calibration shoppers scored that low"
        )
    if info.get("expected_spend_error"):
        console.print(f"expected spend left empty: {info['expected_spend_error']}")
    elif info.get("expected_spend_90d") is not None:
        console.print(f"{info['expected_spend_90d']:,.2f} expected spend within 90 days")
    console.print(f"wrote {target}/ (scores.csv, scores.parquet, README.md, schema.json)")
    console.print(f"{info['latest']} -> {target.name}")
