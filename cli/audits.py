"""`cadence audit`: the fairness audit of a repurchase model, as three report files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadence.cli._render import console, fail, progress
from cadence.cli.models import Horizon


def verdict_line(doc: dict) -> str:
    """One line: the model, the verdict and the checks that did not pass."""
    m = doc["model"]
    line = f"audit {m['name']} v{m['version']}: {doc['verdict']}"
    failing = [x for x in doc["not_passing"] if x["status"] == "FAIL"]
    missing = [x["grouping"] for x in doc["not_passing"] if x["check"] == "missing"]
    warned = [x for x in doc["not_passing"] if x["status"] == "WARN" and x["check"] != "missing"]
    if failing:
        line += " (failing: " + ", ".join(f"{x['grouping']} {x['check']}" for x in failing) + ")"
    if warned:
        line += f"; {len(warned)} check(s) warn"
    if missing:
        line += f"; not audited, the data lacks them: {', '.join(missing)}"
    return line


def audit(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="models:/<name>/<version> or models:/<name>@<alias>.",
            show_default="the newest challenger, else the champion",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also copy the report's three files into this folder.",
            show_default="reports/audits/<model>/v<version>/<time>/ only",
        ),
    ] = None,
    horizon: Horizon = None,
) -> None:
    """Audit a repurchase model's targeting for fairness: HTML report, JSON and model card.
    Exit 0 on PASS or WARN, 1 on FAIL, 2 on bad input."""
    from mlflow.exceptions import MlflowException

    from cadence.cli._logs import after_heavy_imports
    from cadence.flows.steps import audits as step

    settings = ctx.obj
    if out is not None and out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    try:
        conf = settings.decisions()
        with progress("auditing") as report:
            folder, doc = step.run_audit(settings, conf, model, horizon=horizon, report=report)
        after_heavy_imports()
        written = (
            step.copy_out(folder, out) if out is not None else [folder / f for f in step.FILES]
        )
    except (MlflowException, ValueError) as exc:
        fail(exc)
    style = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}[doc["verdict"]]
    console.print(verdict_line(doc), style=style, markup=False, highlight=False)
    for path in written:
        console.print(f"  {path}", markup=False, highlight=False)
    if doc["verdict"] == "FAIL":
        raise typer.Exit(code=1)
