"""The daily drift check, run after `score`: has the champion's world moved?

It compares every model input and the score at the latest feature snapshot with the champion's
test window, or its training window (`drift.reference`; population stability index), and,
once a horizon's labels have come in after the champion's test window, its realised ROC AUC
with its test AUC. Beyond the limits in
conf/flows.yaml (`drift`) it starts `train` and records why; either way the figures go to
MLflow (experiment `drift`) and to reports/drift-<snapshot date>.html.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cadence.flows._drift_report import render
from cadence.flows.settings import Settings
from cadence.flows.steps import _read
from cadence.flows.steps._progress import Progress, Report, silent
from cadence.ingest import write_text_atomic
from cadence.models._drift import Limits, Verdict, psi, psi_columns, verdict

if TYPE_CHECKING:
    from cadence.models._train import Trained

EXPERIMENT = "drift"
# Reference rows beyond this are sampled (seeded): deciles of 200,000 rows are exact enough, and
# the check stays a few seconds on a large shop.
REFERENCE_ROWS = 200_000


@dataclass(frozen=True)
class Figures:
    """What the check measured; `auc_realised` is None until a labelled snapshot follows the
    champion's test window."""

    name: str
    version: str
    reference_window: str
    current: pd.Timestamp
    feature_psi: pd.Series
    score_psi: float
    auc_test: float | None
    auc_realised: float | None
    auc_snapshot: pd.Timestamp | None
    summary: pd.DataFrame  # per input: mean and missing share, reference and current


def check_drift(
    settings: Settings,
    *,
    retrain: Callable[[str], Any] | None = None,
    report: Report = silent,
) -> dict[str, Any]:
    """Measures drift of the champion, records it, and retrains when it is beyond the limits
    and there is something new to learn from (a snapshot labelled after the champion's test
    window); otherwise the retraining waits, and the run says so.

    `retrain` is called with the reasons when it runs; by default it runs the `train` flow."""
    conf = settings.decisions().flows.drift
    figures = measure(settings, bins=conf.bins, reference_slice=conf.reference, report=report)
    limits = Limits(conf.max_feature_psi, conf.max_score_psi, conf.max_auc_drop)
    v = verdict(
        figures.feature_psi.to_dict(),
        figures.score_psi,
        limits,
        auc_realised=figures.auc_realised,
        auc_test=figures.auc_test,
    )
    page = settings.reports_dir / f"drift-{figures.current.date()}.html"
    write_text_atomic(page, render(figures, v, limits))
    run_id = _log(settings, figures, v, page)
    report(Progress("drift", f"{'retrain' if v.retrain else 'ok'}; report in {page}"))
    out: dict[str, Any] = {
        "verdict": "retrain" if v.retrain else "ok",
        "reasons": v.reasons,
        "model": f"{figures.name} v{figures.version}",
        "as_of": figures.current.isoformat(),
        "score_psi": figures.score_psi,
        "largest_input_psi": {
            str(figures.feature_psi.index[0]): float(figures.feature_psi.iloc[0])
        },
        "auc_test": figures.auc_test,
        "auc_realised": figures.auc_realised,
        "report": str(page),
        "run_id": run_id,
    }
    if v.retrain and figures.auc_snapshot is None:
        # Retraining now would split the same labelled snapshots the same way and fit the same
        # rows: it waits until a horizon's labels have come in after the champion's test window.
        waiting = (
            "waits: no snapshot labelled since the champion's test window, so it would fit "
            "the same rows"
        )
        from mlflow import MlflowClient

        MlflowClient().set_tag(run_id, "retrain", waiting)
        report(Progress("drift", f"retraining {waiting}"))
        out["retrain"] = waiting
    elif v.retrain:
        out["retrain"] = _retrain(retrain, "; ".join(v.reasons), run_id, report)
    return out


def measure(
    settings: Settings, *, bins: int, reference_slice: str = "test", report: Report = silent
) -> Figures:
    """The champion's drift figures, read from the workspace and MLflow; writes nothing."""
    from mlflow import MlflowClient

    from cadence.models._registry import CHAMPION, alias_version, configure, load, model_name

    horizon = settings.decisions().models.horizon_days
    name = model_name(horizon, horizon)
    configure(settings.home, settings.mlflow_tracking_uri)
    version = alias_version(name, CHAMPION)
    if version is None:
        raise ValueError(f"{name} has no champion: nothing to check for drift")
    trained = load(f"models:/{name}@{CHAMPION}")
    split = trained.split
    snaps = _read.snapshots(settings.features_dir)
    window = getattr(split, reference_slice)
    lacking = [s for s in window if s not in set(snaps)]
    if lacking:
        raise ValueError(
            f"the workspace's features lack {len(lacking)} of the champion's {reference_slice} "
            f"snapshots ({split.window(reference_slice)}); rebuild them on the same grid"
        )
    current_at = max(snaps)
    reference = _read.feature_rows(settings.features_dir, window)
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(REFERENCE_ROWS, random_state=0)
    current = _read.feature_rows(settings.features_dir, [current_at])
    report(Progress("drift", f"{len(reference):,} reference rows, {len(current):,} current"))

    x_ref, x_cur = trained.inputs(reference), trained.inputs(current)
    feature_psi = psi_columns(x_ref, x_cur, bins)
    p_ref = trained.predict(reference).probability
    p_cur = trained.predict(current).probability
    score_psi = psi(p_ref, p_cur, bins)

    run_id = MlflowClient().get_model_version(name, version).run_id
    auc_test = MlflowClient().get_run(run_id).data.metrics.get("model.roc_auc") if run_id else None
    auc_realised, auc_at = _realised_auc(settings, trained, snaps, current, current_at)
    summary = pd.DataFrame(
        {
            "mean_reference": x_ref.mean(),
            "mean_current": x_cur.mean(),
            "missing_reference": x_ref.isna().mean(),
            "missing_current": x_cur.isna().mean(),
        }
    )
    return Figures(
        name,
        version,
        f"{reference_slice} window {split.window(reference_slice)}",
        current_at,
        feature_psi,
        score_psi,
        auc_test,
        auc_realised,
        auc_at,
        summary,
    )


def _realised_auc(
    settings: Settings,
    trained: Trained,
    snaps: list[pd.Timestamp],
    current: pd.DataFrame,
    current_at: pd.Timestamp,
) -> tuple[float | None, pd.Timestamp | None]:
    """ROC AUC on the latest snapshot whose horizon has passed, if it follows the test window;
    labelled as training labels."""
    from cadence.models._labels import label_rows
    from cadence.models._metrics import classification_metrics

    log = _read.orders(settings.raw_dir)
    end = _read.data_end(settings.raw_dir, log)
    h = trained.horizon_days
    done = [s for s in snaps if s + pd.Timedelta(days=h) <= end and s > max(trained.split.test)]
    if not done:
        return None, None
    at = max(done)
    frame = current if at == current_at else _read.feature_rows(settings.features_dir, [at])
    rows = label_rows(frame, log, horizons=(h,), end=end)
    rows = rows[rows[f"y_{h}d"].notna()]
    y = rows[f"y_{h}d"].to_numpy(int)
    if len(set(y)) < 2:
        return None, at
    p = trained.predict(rows).probability.to_numpy()
    return classification_metrics(y, p)["roc_auc"], at


def _experiment() -> str:
    """The `drift` experiment; on a SQLite tracking store its artifacts sit beside the
    database, as the `repurchase` experiment's do."""
    import mlflow
    from mlflow.exceptions import MlflowException

    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    uri = mlflow.get_tracking_uri()
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        location = (db.parent / "artifacts" / EXPERIMENT).resolve().as_uri()
    try:
        return mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    except MlflowException:
        exp = mlflow.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id  # created meanwhile by another check


def _log(settings: Settings, figures: Figures, v: Verdict, page: Path) -> str:
    import mlflow

    from cadence.models._registry import configure

    configure(settings.home, settings.mlflow_tracking_uri)
    metrics = {f"psi.{k}": float(x) for k, x in figures.feature_psi.items()}
    metrics["psi.score"] = figures.score_psi
    if figures.auc_realised is not None:
        metrics["auc.realised"] = figures.auc_realised
    if figures.auc_test is not None:
        metrics["auc.test"] = figures.auc_test
    tags = {
        "verdict": "retrain" if v.retrain else "ok",
        "reasons": "; ".join(v.reasons) or "within the limits",
        "model": f"{figures.name} v{figures.version}",
        "reference_window": figures.reference_window,
        "current_snapshot": str(figures.current.date()),
        "auc_snapshot": str(figures.auc_snapshot.date()) if figures.auc_snapshot else "",
    }
    name = f"drift-{figures.current.date()}"
    with mlflow.start_run(experiment_id=_experiment(), run_name=name) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(page))
    return run.info.run_id


def _train_flow(_reasons: str) -> Any:
    """The default retraining: the `train` flow, with the configured decisions."""
    from cadence.flows.pipeline import TrainParams, train

    return train(TrainParams())


def _retrain(
    retrain: Callable[[str], Any] | None, reasons: str, run_id: str, report: Report
) -> Any:
    """Starts retraining (the `train` flow unless a callable is given); tags the drift run with
    how it went."""
    from mlflow import MlflowClient

    report(Progress("drift", f"retraining: {reasons}"))
    try:
        result = (retrain or _train_flow)(reasons)
    except Exception as exc:
        MlflowClient().set_tag(run_id, "retrain", f"failed: {exc}"[:5000])
        raise
    MlflowClient().set_tag(run_id, "retrain", "ran")
    return result
