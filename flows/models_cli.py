"""`cadence train / evaluate / promote / rollback / score`: the repurchase model's life cycle."""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
import yaml
from rich.console import Console
from rich.table import Table

from flows._warnings import quiet
from flows.settings import Settings

console = Console()
err = Console(stderr=True)


class Target(enum.StrEnum):
    repurchase = "repurchase"


_CONF_KEYS = {
    "horizon_days": None,
    "split": {"test_snapshots", "calibrate_snapshots"},
    "training": {"seed", "propensity", "timing"},
    "promotion": {"margin_roc_auc", "max_ece"},
    "scoring": {"lead_days", "drivers", "bands"},
}


def load_models_conf(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - set(_CONF_KEYS)
    for key, allowed in _CONF_KEYS.items():
        if allowed is not None:
            if key not in data:
                raise ValueError(f"{path}: missing section {key!r}")
            unknown |= {f"{key}.{k}" for k in set(data[key]) - allowed}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}")
    if data["scoring"]["drivers"] not in ("treeshap", "approximate"):
        raise ValueError(f"{path}: scoring.drivers must be treeshap or approximate")
    bands = data["scoring"]["bands"]
    if not 0 < bands["medium"] < bands["high"] < 1:
        raise ValueError(f"{path}: scoring.bands needs 0 < medium < high < 1, got {bands}")
    return data


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]{exc}[/red]")
    return typer.Exit(code=2)


class _Ctx:
    """Settings, decisions and MLflow, set up once per command."""

    def __init__(self, settings: Settings, horizon: int | None = None) -> None:
        import models._data  # noqa: F401  (imports Feast, which resets warning filters)
        from models._registry import configure, model_name

        quiet()
        self.settings = settings
        self.conf = load_models_conf(settings.conf / "models.yaml")
        self.horizon = horizon or int(self.conf["horizon_days"])
        self.name = model_name(self.horizon, int(self.conf["horizon_days"]))
        self.experiment = configure(settings.home, settings.mlflow_tracking_uri)


def _data(settings: Settings, at: list[pd.Timestamp] | None = None):
    """Feature rows (all, or at the given snapshots), the order log and the data's end."""
    from models import _data

    log = _data.orders(settings.raw_dir)
    end = _data.data_end(settings.raw_dir, log)
    return _data.feature_rows(settings.features_dir, at), log, end


def train_repurchase(settings: Settings, horizon: int | None = None) -> dict[str, Any]:
    """Train on the workspace's features, evaluate, log to MLflow, register a challenger."""
    from models._data import oracle as read_oracle
    from models._data import snapshots
    from models._plots import calibration_figure, curves, gain_figure
    from models._registry import log_and_register
    from models._train import evaluate_scores, fit, prepare

    ctx = _Ctx(settings, horizon)
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(name: str) -> None:
        stages[name] = time.perf_counter() - started - sum(stages.values())

    with console.status("reading features and orders"):
        frame, log, end = _data(settings)
        oracle = read_oracle(settings.truth_dir)
    split_conf, training = ctx.conf["split"], ctx.conf["training"]
    rows, split = prepare(
        frame,
        log,
        end=end,
        horizon_days=ctx.horizon,
        test=int(split_conf["test_snapshots"]),
        calibrate=int(split_conf["calibrate_snapshots"]),
    )
    features = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    lap("read")
    with console.status(f"training on {int((rows.slice == 'train').sum()):,} rows"):
        trained = fit(rows, features, split, **training)
    lap("fit")
    with console.status("evaluating against the baselines"):
        report, y, scores = evaluate_scores(trained, rows, log, oracle)
    lap("evaluate")
    points = curves(y, scores)
    figures = {
        "calibration.png": calibration_figure(points, ctx.horizon),
        "gain.png": gain_figure(points),
    }
    manifest = json.loads((settings.features_dir / "manifest.json").read_text())
    all_snaps = snapshots(settings.features_dir)
    windows = {
        "data_window": f"{min(all_snaps).date()}..{end.date()}",
        **{f"{name}_window": split.window(name) for name in ("train", "calibrate", "test")},
    }
    tags = {
        **windows,
        "feature_service": "repurchase_v1",
        "feature_families": ",".join(manifest["families"]),
        "feature_engine": manifest["engine"],
        "horizon_days": str(ctx.horizon),
    }
    counts = rows.slice.value_counts()
    params = {
        "seed": training["seed"],
        **{f"propensity_{k}": v for k, v in training["propensity"].items()},
        **{f"timing_{k}": v for k, v in training["timing"].items()},
        "horizon_days": ctx.horizon,
        "features": len(features),
        "rows_train": int(counts.get("train", 0)),
        "rows_calibrate": int(counts.get("calibrate", 0)),
        "rows_test": int(counts.get("test", 0)),
        "snapshots_train": len(split.train),
        "snapshots_calibrate": len(split.calibrate),
        "snapshots_test": len(split.test),
        "timing_loss": "survival:aft",
        "calibration": "isotonic",
    }
    with console.status("logging to MLflow and registering"):
        run_id, version = log_and_register(
            trained,
            report,
            name=ctx.name,
            experiment_id=ctx.experiment,
            params=params,
            tags=tags,
            # Every feature is declared a double: counts may be missing where a family is.
            example=frame[features].head(5).astype("float64"),
            figures=figures,
            importances=trained.propensity.importances(),
            curves=points,
        )
    lap("log")
    return {
        "name": ctx.name,
        "version": version,
        "run_id": run_id,
        "report": report,
        "test_window": windows["test_window"],
        "n_test": int(counts.get("test", 0)),
        "seconds": time.perf_counter() - started,
        "stages": stages,
    }


_REPORTED = (
    "roc_auc",
    "pr_auc",
    "brier",
    "ece",
    "lift_top_decile",
    "timing_mae_days",
    "timing_mae_days_cycle",
    "interval_coverage",
)


def _report_table(report: dict[str, dict], title: str) -> Table:
    table = Table(title=title)
    table.add_column("scorer")
    for k in _REPORTED:
        table.add_column(k.replace("_", " "), justify="right")
    for name, m in report.items():
        table.add_row(name, *(f"{m[k]:.3f}" if k in m else "" for k in _REPORTED))
    return table


def train(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    horizon: Annotated[
        int | None, typer.Option(help="Days ahead [conf/models.yaml horizon_days].")
    ] = None,
) -> None:
    """Train on the workspace's features, log the run to MLflow, register a challenger."""
    from models._data import MissingInput
    from models._train import NotEnoughData

    try:
        out = train_repurchase(ctx.obj, horizon)
    except (MissingInput, NotEnoughData, ValueError) as exc:
        raise _fail(exc) from exc
    console.print(_report_table(out["report"], f"test window {out['test_window']}"))
    laps = ", ".join(f"{k} {v:.0f} s" for k, v in out["stages"].items())
    console.print(
        f"registered {out['name']} v{out['version']} as challenger "
        f"(run {out['run_id']}; {out['seconds']:.0f} s: {laps})"
    )


def _rows_for(
    settings: Settings, trained, *, calibrate: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled test rows of a model's own split (and its calibration rows, which the
    baselines are calibrated on), from the workspace; and the order log."""
    from models._train import split_rows

    split = trained.split
    frame, log, end = _data(settings, [*(split.calibrate if calibrate else []), *split.test])
    if frame.empty or not frame.snapshot_at.isin(split.test).any():
        raise ValueError(
            f"the workspace's features lack the model's test snapshots "
            f"({split.window('test')}); rebuild them or pass --model"
        )
    return split_rows(frame, log, end, split), log


def evaluate_report(settings: Settings, uri: str | None) -> dict[str, Any]:
    from models._data import oracle
    from models._registry import latest_version, load
    from models._train import evaluate

    ctx = _Ctx(settings)
    if uri is None:
        version = latest_version(ctx.name)
        if version is None:
            raise ValueError(f"no {ctx.name} model yet: run `cadence train repurchase`")
        uri = f"models:/{ctx.name}/{version}"
    trained = load(uri)
    rows, log = _rows_for(settings, trained)
    report = evaluate(trained, rows, log, oracle(settings.truth_dir))
    return {
        **report,
        "model_uri": uri,
        "horizon_days": trained.horizon_days,
        "test_window": trained.split.window("test"),
        "n_test": int((rows.slice == "test").sum()),
    }


def evaluate(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    model: Annotated[
        str | None, typer.Option(help="Model URI [the most recently trained version].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a model and the baselines (and the oracle, on simulated data) on its test slice."""
    from mlflow.exceptions import MlflowException

    from models._data import MissingInput

    try:
        out = evaluate_report(ctx.obj, model)
    except (MissingInput, MlflowException, ValueError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    report = {k: v for k, v in out.items() if isinstance(v, dict)}
    console.print(
        _report_table(
            report, f"{out['model_uri']}: {out['n_test']:,} test rows, {out['test_window']}"
        )
    )


def promote_repurchase(settings: Settings, note: str | None = None) -> tuple[bool, list, str]:
    from models._metrics import classification_metrics
    from models._registry import (
        CHALLENGER,
        CHAMPION,
        Candidate,
        alias_version,
        load,
        promote,
        run_gates,
    )

    ctx = _Ctx(settings)
    version = alias_version(ctx.name, CHALLENGER)
    if version is None:
        raise ValueError(f"{ctx.name} has no challenger: run `cadence train repurchase` first")
    challenger = load(f"models:/{ctx.name}@{CHALLENGER}")
    rows, _ = _rows_for(settings, challenger, calibrate=False)
    test = rows[rows.slice == "test"]
    y = test[f"y_{challenger.horizon_days}d"].to_numpy(int)
    metrics = classification_metrics(y, challenger.predict(test).probability.to_numpy())
    champion_version = alias_version(ctx.name, CHAMPION)
    champion_metrics = None
    if champion_version is not None:
        champion = load(f"models:/{ctx.name}@{CHAMPION}")
        champion_metrics = classification_metrics(y, champion.predict(test).probability.to_numpy())
    window = challenger.split.window("test")
    candidate = Candidate(
        name=ctx.name,
        version=version,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        test_window=window,
        conf=ctx.conf["promotion"],
    )
    results = run_gates(candidate)
    return promote(candidate, results, note), results, version


def promote_cmd(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    reason: Annotated[str | None, typer.Option(help="A note recorded with the decision.")] = None,
) -> None:
    """Run every gate on the challenger; make it champion only if all pass (exit 1 if not)."""
    from mlflow.exceptions import MlflowException

    from models._data import MissingInput

    try:
        promoted, results, version = promote_repurchase(ctx.obj, reason)
    except (MissingInput, MlflowException, ValueError) as exc:
        raise _fail(exc) from exc
    for r in results:
        mark = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {r.gate}: {r.detail}")
    if not promoted:
        err.print(f"[red]v{version} stays challenger: a gate failed[/red]")
        raise typer.Exit(code=1)
    console.print(f"[green]v{version} is champion[/green]")


def rollback_cmd(
    ctx: typer.Context,
    what: Annotated[Target, typer.Argument(help="Which model.")],
    reason: Annotated[str, typer.Option(help="Why (recorded as a tag).")],
) -> None:
    """Move `champion` back to the version the current champion replaced."""
    from models._registry import RollbackError, rollback

    c = _Ctx(ctx.obj)
    try:
        old, new = rollback(c.name, reason)
    except RollbackError as exc:
        raise _fail(exc) from exc
    console.print(f"champion {c.name}: v{old} -> v{new} ({reason})")


def score_users(
    settings: Settings, as_of: pd.Timestamp | None, lead_days: int | None = None
) -> tuple[Path, dict[str, Any]]:
    from flows.features_cli import load_features_conf
    from ingest import staged_dir
    from models import _data
    from models._registry import CHAMPION, alias_version, load
    from models._score import pick_snapshot, score_frame, summary, write_list

    ctx = _Ctx(settings)
    version = alias_version(ctx.name, CHAMPION)
    if version is None:
        raise ValueError(
            f"{ctx.name} has no champion yet: run `cadence train repurchase` and "
            "`cadence promote repurchase` first"
        )
    every = load_features_conf(settings.conf / "features.yaml")["every_days"]
    snap = pick_snapshot(_data.snapshots(settings.features_dir), as_of, every)
    trained = load(f"models:/{ctx.name}@{CHAMPION}")
    frame = _data.feature_rows(settings.features_dir, [snap])
    # Active: bought in the 365 days before the snapshot.
    frame = frame[frame.orders_365d.fillna(0) > 0]
    out_of = _data.withdrawn(settings.raw_dir, snap)
    excluded = 0
    if out_of:
        keep = ~frame.user_id.isin(out_of)
        excluded = int((~keep).sum())
        frame = frame[keep]
    scoring = ctx.conf["scoring"]
    scored = score_frame(
        trained,
        frame.reset_index(drop=True),
        snapshot=snap,
        lead_days=int(scoring["lead_days"] if lead_days is None else lead_days),
        medium=float(scoring["bands"]["medium"]),
        high=float(scoring["bands"]["high"]),
        model_version=f"{ctx.name}/{version}",
        exact_drivers=scoring["drivers"] == "treeshap",
    )
    target = settings.lists_dir / f"{ctx.name}-{snap.date()}"
    with staged_dir(target) as tmp:
        write_list(scored, tmp)
    info = {
        **summary(scored),
        "as_of": snap.isoformat(),
        "model": f"models:/{ctx.name}@{CHAMPION} (v{version})",
        "withdrawn_consent": excluded,
        "consent_log": out_of is not None,
        "horizon_days": trained.horizon_days,
    }
    return target, info


def score(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD [the latest snapshot].")
    ] = None,
    lead_days: Annotated[
        int | None, typer.Option(help="Contact this many days before [conf/models.yaml].")
    ] = None,
) -> None:
    """Write the scored list of active users under lists/ (Parquet and CSV) with the champion."""
    from mlflow.exceptions import MlflowException

    from models._data import MissingInput

    try:
        when = pd.Timestamp(as_of, tz="UTC") if as_of else None
        target, info = score_users(ctx.obj, when, lead_days)
    except (MissingInput, MlflowException, ValueError) as exc:
        raise _fail(exc) from exc
    b = info["bands"]
    console.print(
        f"scored {info['users']:,} active users as of {info['as_of'][:10]} with {info['model']}: "
        f"high {b['high']:,}, medium {b['medium']:,}, low {b['low']:,}; "
        f"{info['expected_orders_in_horizon']:,.0f} orders expected within "
        f"{info['horizon_days']} days"
    )
    if info["consent_log"]:
        console.print(f"left out {info['withdrawn_consent']:,} who withdrew consent to profiling")
    else:
        console.print("no consent log in the raw data: nobody was left out for consent")
    console.print(f"wrote {target}/scores.parquet and scores.csv")


def models_demo(settings: Settings) -> None:
    """The demo's model stage: train, evaluate, promote, score."""
    out = train_repurchase(settings)
    console.print(_report_table(out["report"], f"test window {out['test_window']}"))
    console.print(f"registered {out['name']} v{out['version']} ({out['seconds']:.0f} s)")
    promoted, results, version = promote_repurchase(settings, "demo")
    for r in results:
        console.print(f"{'pass' if r.passed else 'FAIL'} {r.gate}: {r.detail}")
    console.print(f"v{version} {'is champion' if promoted else 'stays challenger'}")
    from models._registry import CHAMPION, alias_version

    if alias_version(out["name"], CHAMPION) is None:
        console.print("no champion yet, so no scored list")
        return
    target, info = score_users(settings, None)
    console.print(
        f"scored list of {info['users']:,} users by {info['model']}: {target} "
        f"(bands {info['bands']}, {info['withdrawn_consent']} left out for consent)"
    )
