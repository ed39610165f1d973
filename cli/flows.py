"""`cadence run`, `cadence deploy` and `cadence demo`: the Prefect flows from the command line."""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from cadence.cli._render import console, fail


class FlowName(enum.StrEnum):
    ingest = "ingest"
    build_features = "build_features"
    train = "train"
    audit = "audit"
    promote = "promote"
    score = "score"
    pipeline = "pipeline"
    consolidate = "consolidate"
    route = "route"


def prefect_env(settings) -> None:
    """Prefect keeps its database and results in the workspace unless told otherwise; set
    before Prefect is imported, since it reads its settings then."""
    (settings.home / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    os.environ.setdefault(
        "PREFECT_LOCAL_STORAGE_PATH", str((settings.home / "prefect" / "storage").resolve())
    )
    # The temporary server's output and Prefect's own logs go to the workspace log, as all
    # third-party chatter does.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # No usage reports from the temporary server: they race its SQLite database at start-up
    # and print a "database is locked" trace to the terminal.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def parse_params(model: type, args: list[str]) -> Any:
    """`--key value` or `--key=value` pairs (dotted keys for nested parameters, `--key` alone
    for true) into the flow's parameter model. Values stay text until the model validates
    them, so a strftime format like %d/%m/%Y or a column named `yes` arrives as written."""
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            fail(f"expected --name value, got '{arg}'")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:
            raw = "true"
            i += 1
        value = raw if raw != "" else None
        node = data
        *parents, leaf = key.replace("-", "_").split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            (f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: " if e["loc"] else "")
            + ("unknown parameter" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        ]
        fail("; ".join(problems))


def run_epilog() -> str:
    """Every flow's parameters with their defaults, for `cadence run --help`."""
    from cadence.flows.params import PARAMS, describe

    # "\b" keeps Click from rewrapping a paragraph.
    parts = ["Parameters: --name value; nested ones dotted, as --ingest.users 5000."]
    for name, model in PARAMS.items():
        parts.append("\b\n" + name + ":\n" + "\n".join(f"  {line}" for line in describe(model)))
    return "\n\n".join(parts)


def run(
    ctx: typer.Context,
    name: Annotated[FlowName, typer.Argument(help="The flow to run.")],
) -> None:
    """Run one Prefect flow: `cadence run train --horizon 7`, `cadence run pipeline
    --ingest.users 5000`. Reports to PREFECT_API_URL's server if set; otherwise Prefect starts
    a temporary local one (about 15 s)."""
    out = _run_flow(ctx.obj, name.value, ctx.args)
    import json

    console.print_json(json.dumps(out, default=str))


def _run_flow(settings, name: str, args: list[str]) -> Any:
    from cadence.flows.params import PARAMS

    params = parse_params(PARAMS[name], args)
    prefect_env(settings)
    from cadence.cli._logs import after_heavy_imports
    from cadence.flows.pipeline import FLOWS

    after_heavy_imports()  # Prefect configured its own console logging on import
    flow = FLOWS[name]
    with console.status(f"running flow {name}") as status, _run_log_to(status, name):
        state = flow(params, return_state=True)
    after_heavy_imports()
    if not state.is_completed():
        try:
            state.result()
        except Exception as exc:
            fail(f"flow {name} {state.name.lower()}: {exc}")
        fail(f"flow {name} {state.name.lower()}")
    return state.result()


@contextlib.contextmanager
def _run_log_to(status, name: str) -> Iterator[None]:
    """Shows the latest line of the flow and task runs' logs (the steps' progress, with their
    counts) beside the spinner; the whole log stays in the workspace's log file."""
    import logging

    class Latest(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            status.update(f"{name}: {record.getMessage()}"[:120])

    handler = Latest(logging.INFO)
    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def deploy(
    ctx: typer.Context,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Start a local Prefect server when none is configured, and serve the "
            "deployments from this process until interrupted.",
        ),
    ] = False,
    work_pool: Annotated[
        str | None,
        typer.Option(
            "--work-pool",
            help="Deploy to this Prefect work pool (`prefect work-pool create NAME --type "
            "process`), whose worker runs the flows: `prefect worker start --pool NAME`.",
        ),
    ] = None,
) -> None:
    """Register the scheduled deployments (score daily; train, promote and route weekly; cron
    in conf/flows.yaml) on the Prefect server at PREFECT_API_URL."""
    prefect_env(ctx.obj)
    from cadence.flows.deploy import DeployError, deploy_all

    try:
        deploy_all(ctx.obj, serve=serve, echo=console.print, work_pool=work_pool)
    except DeployError as exc:
        fail(exc)


def _campaign(settings, days: int = 28) -> None:
    """The demo's merge campaign on the world it just built, read out."""
    from cadence.cli._render import progress
    from cadence.cli.serving import render_campaign
    from cadence.flows.steps import merge

    try:
        with progress("merge campaign") as report:
            out = merge.simulate(settings, settings.decisions(), days, report=report)
    except ValueError as exc:
        console.print(f"merge campaign not run: {exc}", markup=False)
        return
    render_campaign(out)


def _routing(out: dict[str, Any]) -> None:
    """The demo's routing: the models trained and gated, the strategies side by side."""
    from cadence.cli.routing import ab_lines, strategy_table

    if "skipped" in out:
        console.print(f"routing not run: {out['skipped']}", markup=False)
        return
    promote = out["promote"]
    refused = [g["gate"] for g in promote["gates"] if not g["passed"]]
    verdict = "is champion" if promote["promoted"] else f"stays challenger ({', '.join(refused)})"
    console.print(f"routing v{promote['version']} {verdict}", markup=False)
    console.print(strategy_table(out["evaluate"]))
    for line in ab_lines(out["evaluate"]["ab"]):
        console.print(line, markup=False)


def demo(ctx: typer.Context) -> None:
    """Run the `pipeline` flow on the embedded default world and print where everything is."""
    from rich.table import Table

    settings = ctx.obj
    out = _run_flow(settings, "pipeline", [])
    train = out["train"]
    report = train["report"]
    table = Table(title=f"repurchase v{train['version']}, test window {train['test_window']}")
    table.add_column("scorer")
    for col in ("ROC AUC", "Brier", "ECE"):
        table.add_column(col, justify="right")
    for name in ("model", "bgnbd", "rule", "oracle"):
        if name in report:
            m = report[name]
            table.add_row(name, f"{m['roc_auc']:.3f}", f"{m['brier']:.4f}", f"{m['ece']:.4f}")
    console.print(table)
    audited = out["audit"]
    if audited.get("audited"):
        style = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}[audited["verdict"]]
        failing = [f"{x['grouping']} {x['check']}" for x in audited["not_passing"]]
        said = f"fairness audit of v{audited['version']}: {audited['verdict']}"
        if failing:
            said += f" (not passing: {', '.join(failing)})"
        console.print(said, style=style, markup=False)
        console.print(f"audit report: {audited['report']}", markup=False)
    promote = out["promote"]
    if promote["promoted"]:
        verdict = "is champion"
    else:
        refused = [g["gate"] for g in promote["gates"] if not g["passed"]]
        why = f"refused by {', '.join(refused)}; " if refused else ""
        holder = f"v{promote['champion']} is champion" if promote["champion"] else "no champion yet"
        verdict = f"stays challenger ({why}{holder})"
    console.print(f"v{promote['version']} {verdict}", markup=False)
    score = out["score"]
    if score.get("scored", True):
        bands = Table(title=f"scored list as of {score['as_of'][:10]}: {score['users']:,} shoppers")
        for col in ("high", "medium", "low"):
            bands.add_column(col, justify="right")
        bands.add_row(*(f"{score['bands'][b]:,}" for b in ("high", "medium", "low")))
        console.print(bands)
        console.print(f"list: {score['list']}/scores.csv")
        drift = score.get("drift")
        if drift:
            said = f"drift: {drift['verdict']}"
            if drift["reasons"]:
                said += f" ({'; '.join(drift['reasons'])})"
            if drift.get("retrain"):
                said += f"; retraining {drift['retrain']}"
            console.print(said, markup=False)
            console.print(f"drift report: {drift['report']}", markup=False)
    _campaign(settings)
    _routing(out.get("route", {"skipped": "not part of this run"}))
    tracking = (
        settings.mlflow_tracking_uri or f"sqlite:///{(settings.mlflow_dir / 'mlflow.db').resolve()}"
    )
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {tracking}")
    api = os.environ.get("PREFECT_API_URL")
    if api:
        console.print(f"Prefect UI: {api.removesuffix('/api')}")
    else:
        console.print("Prefect UI: `cadence deploy --serve` starts a server and its UI")
