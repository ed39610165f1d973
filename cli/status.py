"""`cadence status`: the workspace at a glance."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cadence.cli._render import console, fail


def _when(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "-"


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Raw tables, the feature build, Feast, model versions and the latest list."""
    from rich.table import Table

    from cadence.cli._logs import after_heavy_imports
    from cadence.flows.steps import status as step

    try:
        s = step.status(ctx.obj)
    except ValueError as exc:
        fail(exc)
    after_heavy_imports()
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    console.print(f"workspace {s['workspace']}", markup=False)
    raw = s["raw"]
    if raw is None:
        console.print("raw: none (`cadence world generate` or `cadence data import-orders`)")
    else:
        # A heading of its own: a title is wrapped to the (narrow) table's width.
        console.print(f"raw data ({raw['source']}), {raw['window']}:")
        t = Table()
        t.add_column("table")
        t.add_column("rows", justify="right")
        for name, rows in raw["tables"].items():
            t.add_row(name, f"{rows:,}")
        console.print(t)
    f = s["features"]
    if f is None:
        console.print("features: none (`cadence features build`)")
    else:
        note = (
            "; [yellow]stale: raw/ changed since; run `cadence features build`[/yellow]"
            if f["stale"]
            else ""
        )
        console.print(
            f"features: {f['user_features']} user features x {f['rows']:,} rows, "
            f"{f['snapshots']} snapshots {f['first']}..{f['last']} ({f['engine']}), "
            f"built {_when(f['built_at'])}{note}"
        )
    fe = s["feast"]
    console.print(
        f"feast: registry {_when(fe['registry_updated'])}; online store {fe['online_store']}"
        + (f", updated {_when(fe['online_updated'])}" if fe["online_updated"] else ""),
        markup=False,
    )
    if not s["models"]:
        console.print("models: none (`cadence train repurchase`)")
    else:
        t = Table(title="registered models")
        for col in (
            "model",
            "version",
            "aliases",
            "ROC AUC",
            "BG/NBD",
            "ECE",
            "test window",
            "audit",
        ):
            t.add_column(col)
        for m in s["models"]:
            t.add_row(
                m["name"],
                str(m["version"]),
                ", ".join(m["aliases"]),
                *(
                    f"{m[k]:.3f}" if m[k] is not None else "-"
                    for k in ("roc_auc", "bgnbd_roc_auc", "ece")
                ),
                m["test_window"] or "-",
                m["audit"] or "-",
            )
        console.print(t)
    lst = s["list"]
    if lst is None:
        console.print("list: none (`cadence score`)")
    else:
        console.print(
            f"list: {lst['rows']:,} shoppers in {lst['path']}, written {_when(lst['written_at'])}",
            markup=False,
        )
