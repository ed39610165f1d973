"""Model steps: train, evaluate, promote, roll back and score the repurchase model.

Each reads the workspace (features, orders, truth), calls the models stage, talks to MLflow
(the workspace's SQLite database unless `MLFLOW_TRACKING_URI` names a server) and writes the
list through a staged folder. Errors a user can fix are `ValueError`s naming what is missing.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cadence.flows.conf import Conf, ModelsConf, TrainingConf
from cadence.flows.settings import Settings
from cadence.flows.steps import _lineage, _read
from cadence.flows.steps._progress import Progress, Report, silent

# Customer resamples behind every bootstrap interval (`models._uncertainty`).
DEFAULT_RESAMPLES = 200

LATEST = "latest"  # lists/<model>/latest: a link to the model's newest list


@dataclass(frozen=True)
class ModelContext:
    """The decisions, the registered model's name and the MLflow experiment, set up once."""

    settings: Settings
    conf: ModelsConf
    horizon: int
    name: str
    experiment: str


def has_models(settings: Settings) -> bool:
    """False when tracking is the workspace's own and nothing was ever trained there."""
    return settings.mlflow_tracking_uri is not None or (settings.mlflow_dir / "mlflow.db").exists()


def check_horizon(models: ModelsConf, horizon: int | None) -> None:
    """A horizon given on the command line must be one conf/models.yaml trains for."""
    if horizon is not None and horizon not in models.horizons_days:
        allowed = ", ".join(str(h) for h in models.horizons_days)
        raise ValueError(
            f"--horizon {horizon}: not a configured horizon ({allowed}; conf/models.yaml "
            "horizons_days)"
        )


def context(
    settings: Settings, conf: Conf, horizon: int | None = None, *, training: bool = False
) -> ModelContext:
    """Set up once per command. Only training may create the workspace's MLflow database: a
    command that reads models stops before writing anything when there are none."""
    from cadence.models._registry import configure, model_name

    models = conf.models
    check_horizon(models, horizon)
    if not training and not has_models(settings):
        raise ValueError(
            f"no models in {settings.mlflow_dir} yet: run `cadence train repurchase` first"
        )
    h = horizon or models.horizon_days
    experiment = configure(settings.home, settings.mlflow_tracking_uri)
    return ModelContext(settings, models, h, model_name(h, models.horizon_days), experiment)


def _data(settings: Settings, at: list[pd.Timestamp] | None = None):
    """Feature rows (all, or at the given snapshots), the order log and the data's end."""
    log = _read.orders(settings.raw_dir)
    end = _read.data_end(settings.raw_dir, log)
    return _read.feature_rows(settings.features_dir, at), log, end


def fit_configured(rows: pd.DataFrame, features: list[str], split, training: TrainingConf):
    """Both estimators fitted with the settings in conf/models.yaml's `training`."""
    from cadence.models._train import fit

    return fit(
        rows,
        features,
        split,
        seed=training.seed,
        n_jobs=training.n_jobs,
        propensity=training.propensity.model_dump(),
        timing=training.timing.model_dump(),
        select=training.select_against_btyd,
    )


def train(ctx: ModelContext, *, report: Report = silent) -> dict[str, Any]:
    """Train on the workspace's features, evaluate, log to MLflow, register a challenger."""
    from cadence.features import read_manifest
    from cadence.models._plots import calibration_figure, curves, gain_figure
    from cadence.models._registry import log_and_register
    from cadence.models._train import evaluate_scores, prepare
    from cadence.models._uncertainty import metric_groups

    settings = ctx.settings
    lineage = _lineage.fresh_features(settings)
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(name: str, message: str) -> None:
        stages[name] = time.perf_counter() - started - sum(stages.values())
        report(Progress("train", message, len(stages), 5))

    frame, log, end = _data(settings)
    oracle = _read.oracle(settings.truth_dir)
    split_conf, training = ctx.conf.split, ctx.conf.training
    rows, split = prepare(
        frame,
        log,
        end=end,
        horizon_days=ctx.horizon,
        test=split_conf.test_snapshots,
        calibrate=split_conf.calibrate_snapshots,
        min_buyers=training.min_buyers,
    )
    features = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    lap("read", f"read {len(rows):,} labelled rows, {len(features)} features")
    trained = fit_configured(rows, features, split, training)
    lap("fit", f"fitted on {int((rows.slice == 'train').sum()):,} rows")
    report_, y, scores = evaluate_scores(trained, rows, log, oracle)
    lap("evaluate", "evaluated beside the baselines")
    value = customer_value(settings, training, frame)
    lap("value", "customer value judged on realised spend")
    points = curves(y, scores)
    figures = {
        "calibration.png": calibration_figure(points, ctx.horizon),
        "gain.png": gain_figure(points),
    }
    manifest = read_manifest(settings.features_dir)
    all_snaps = _read.snapshots(settings.features_dir)
    windows = {
        "data_window": f"{min(all_snaps).date()}..{end.date()}",
        **{f"{name}_window": split.window(name) for name in ("train", "calibrate", "test")},
    }
    tags = {
        **windows,
        "feature_service": "repurchase_v1",
        "feature_families": ",".join(manifest.families),
        "feature_engine": manifest.engine,
        "features_fingerprint": lineage["features"],
        "horizon_days": str(ctx.horizon),
    }
    counts = rows.slice.value_counts()
    params = {
        "seed": training.seed,
        **{f"propensity_{k}": v for k, v in training.propensity.model_dump().items()},
        **{f"timing_{k}": v for k, v in training.timing.model_dump().items()},
        "horizon_days": ctx.horizon,
        "features": len(features),
        "rows_train": int(counts.get("train", 0)),
        "rows_calibrate": int(counts.get("calibrate", 0)),
        "rows_test": int(counts.get("test", 0)),
        "snapshots_train": len(split.train),
        "snapshots_calibrate": len(split.calibrate),
        "snapshots_test": len(split.test),
        "timing_loss": "survival:aft",
        # The calibration chosen on the calibration slice, and each candidate's
        # cross-validated log loss there (metrics `calibration.<method>_cv_log_loss`).
        "calibration": trained.propensity.calibration_["method"],
        "calibration_folds": trained.propensity.calibration_["folds"],
        "propensity_best_iteration": trained.propensity.best_iteration_,
        "propensity_model": trained.propensity.kind,
    }
    selection = trained.selection or {}
    if selection:
        tags["selection_reason"] = selection["reason"]
        params["propensity_hybrid_best_iteration"] = selection["hybrid_best_iteration"]
    cv = trained.propensity.calibration_["cv_log_loss"]
    run_id, version = log_and_register(
        trained,
        {
            **report_,
            "calibration": {f"{m}_cv_log_loss": v for m, v in cv.items()},
            # The hybrid and BG/NBD on the calibration slice (`selection.hybrid.roc_auc`, ...).
            **{
                f"selection.{who}": selection[who] for who in ("hybrid", "btyd") if who in selection
            },
            # Segments and intervals as flat metrics (`segment.repeat.model.roc_auc`,
            # `interval.roc_auc_difference.model-bgnbd.low`, ...).
            **metric_groups(report_),
            # `value.90d.cadence_value.mae`, `value.90d.bgnbd_gamma_gamma.spearman`, ...
            **value_metrics(value),
        },
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
    lap("log", f"registered {ctx.name} v{version} as challenger")
    return {
        "name": ctx.name,
        "version": version,
        "run_id": run_id,
        "report": report_,
        "test_window": windows["test_window"],
        "n_test": int(counts.get("test", 0)),
        "seconds": time.perf_counter() - started,
        "stages": stages,
        "propensity": trained.propensity.kind,
        "selection": trained.selection,
        "value": value,
    }


def value_metrics(value: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The value report's figures as metric groups: each model's per horizon, and the 90-day
    interval's coverage."""
    out: dict[str, dict[str, float]] = {}
    for key, entry in value.get("horizons", {}).items():
        for model, m in entry.get("models", {}).items():
            out[f"value.{key}.{model}"] = {
                k: v for k, v in m.items() if k in ("mae", "spearman", "predicted_total")
            }
        for kind in ("uncalibrated", "calibrated"):
            if isinstance(iv := entry.get("interval", {}).get(kind), dict):
                out[f"value.{key}.interval_{kind}"] = {"coverage": iv["coverage"]}
    return out


def _rows_for(
    settings: Settings, trained, *, calibrate: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled test rows of a model's own split (and its calibration rows, which the
    baselines are calibrated on), from the workspace; and the order log."""
    from cadence.models._train import split_rows

    split = trained.split
    frame, log, end = _data(settings, [*(split.calibrate if calibrate else []), *split.test])
    if frame.empty or not frame.snapshot_at.isin(split.test).any():
        raise ValueError(
            f"the workspace's features lack the model's test snapshots "
            f"({split.window('test')}); rebuild them or pass --model"
        )
    return split_rows(frame, log, end, split), log


def evaluate(
    ctx: ModelContext, uri: str | None, *, resamples: int = DEFAULT_RESAMPLES
) -> dict[str, Any]:
    """The model (default: the latest version) and the baselines on its own test slice, by
    segment and with bootstrap intervals from `resamples` customer resamples."""
    from cadence.models._registry import latest_version, load
    from cadence.models._train import evaluate as evaluate_model

    _lineage.fresh_features(ctx.settings)
    if uri is None:
        version = latest_version(ctx.name)
        if version is None:
            raise ValueError(f"no {ctx.name} model yet: run `cadence train repurchase`")
        uri = f"models:/{ctx.name}/{version}"
    trained = load(uri)
    rows, log = _rows_for(ctx.settings, trained)
    report = evaluate_model(
        trained, rows, log, _read.oracle(ctx.settings.truth_dir), resamples=resamples
    )
    return {
        **report,
        "value": customer_value(ctx.settings, ctx.conf.training),
        "model_uri": uri,
        "propensity": trained.propensity.kind,
        "selection": trained.selection,
        "horizon_days": trained.horizon_days,
        "test_window": trained.split.window("test"),
        "n_test": int((rows.slice == "test").sum()),
    }


def customer_value(
    settings: Settings, training: TrainingConf, features: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Expected spend over 90 and 365 days by BG/NBD x Gamma-Gamma and by Cadence's own value
    model against the spend realised after the latest snapshot whose window the data holds
    (`flows.steps.value`), from the workspace's feature rows (or `features`, all of them, when
    already read); `{"skipped": reason}` when the data cannot judge it."""
    from cadence.flows.steps.value import workspace_value_report

    try:
        return workspace_value_report(
            settings.raw_dir,
            settings.features_dir,
            seed=training.seed,
            n_jobs=training.n_jobs,
            features=features,
        )
    except ValueError as exc:  # too short a log, or no amounts to learn from
        return {"skipped": str(exc)}


def promote(
    ctx: ModelContext, note: str | None = None, *, report: Report = silent
) -> tuple[bool, list, str]:
    """Runs the configured gates on the challenger; makes it champion only if all pass.
    Returns (promoted, gate results, the challenger's version). With the `fairness_audit`
    gate, the challenger's audit is reused when one of the same inputs is kept, else made."""
    import cadence.audits  # registers the fairness_audit gate, used below
    from cadence.models._gates import GateResult, candidate, check_gates, run_gates
    from cadence.models._registry import CHALLENGER, CHAMPION, alias_version, load
    from cadence.models._registry import promote as set_champion

    gates = ctx.conf.promotion.gates
    check_gates(gates)
    version = alias_version(ctx.name, CHALLENGER)
    if version is None:
        raise ValueError(f"{ctx.name} has no challenger: run `cadence train repurchase` first")
    challenger = load(f"models:/{ctx.name}@{CHALLENGER}")
    rows, _ = _rows_for(ctx.settings, challenger, calibrate=False)
    champion_version = alias_version(ctx.name, CHAMPION)
    champion = load(f"models:/{ctx.name}@{CHAMPION}") if champion_version else None
    cand = candidate(
        name=ctx.name,
        version=version,
        challenger=challenger,
        champion=champion,
        champion_version=champion_version,
        test=rows[rows.slice == "test"],
        conf=ctx.conf.promotion.model_dump(),
    )
    if cadence.audits.GATE in gates:
        from cadence.flows.steps.audits import audit_for_gate

        cand.audit = audit_for_gate(ctx, version, report=report)
    results = run_gates(cand, gates)
    promoted = set_champion(cand, results, note)
    audits_conf = ctx.settings.decisions().audits
    unfair = cand.audit is not None and cand.audit["verdict"] == cadence.audits.FAIL
    if (
        not promoted
        and unfair
        and audits_conf.mitigation.policy == "mitigate"
        and challenger.postprocess is None
    ):
        from cadence.flows.steps.audits import register_mitigated

        new, _ = register_mitigated(ctx.settings, ctx, version, Path(cand.audit["folder"]))
        report(Progress("promote", f"v{version} failed its audit; mitigated variant v{new}", 1, 2))
        # The variant is the challenger now; it is audited and gated like any other.
        ok, variant_results, _ = promote(ctx, note, report=report)
        said = [GateResult(r.gate, r.passed, f"v{version}: {r.detail}") for r in results]
        said += [
            GateResult(r.gate, r.passed, f"v{new}, mitigated: {r.detail}") for r in variant_results
        ]
        return ok, said, new
    return promoted, results, version


def rollback(ctx: ModelContext, reason: str) -> tuple[str, str]:
    from cadence.models._registry import rollback as _rollback

    return _rollback(ctx.name, reason)


def score(
    ctx: ModelContext,
    conf: Conf,
    as_of: pd.Timestamp | None,
    lead_days: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Scores the eligible shoppers with the champion into a new folder,
    lists/<name>/<as-of date>_<UTC run time>/ (the list, README.md and schema.json), and
    points lists/<name>/latest at it. Nothing already in lists/ is changed or deleted."""
    from cadence.features import read_manifest
    from cadence.ingest import staged_dir
    from cadence.models._registry import CHAMPION, alias_version, load
    from cadence.models._score import (
        ListInfo,
        eligible,
        pick_snapshot,
        score_frame,
        summary,
        write_list,
    )

    settings = ctx.settings
    _lineage.fresh_features(settings)
    version = alias_version(ctx.name, CHAMPION)
    if version is None:
        raise ValueError(
            f"{ctx.name} has no champion yet: run `cadence train repurchase` and "
            "`cadence promote repurchase` first"
        )
    if lead_days is not None and lead_days < 0:
        raise ValueError(f"--lead-days must be 0 or more, got {lead_days}")
    every = conf.features.snapshots.every_days
    snap = pick_snapshot(_read.snapshots(settings.features_dir), as_of, every)
    trained = load(f"models:/{ctx.name}@{CHAMPION}")
    scoring = ctx.conf.scoring
    lead = scoring.lead_days if lead_days is None else lead_days
    out_of = _read.withdrawn(settings.raw_dir, snap)
    # Shoppers who opted out through the merge service are never profiled again.
    opted_out = serving_opt_outs(settings)
    if opted_out:
        out_of = (out_of or set()) | opted_out
    frame, excluded = eligible(
        _read.feature_rows(settings.features_dir, [snap]),
        active_days=scoring.active_days,
        withdrawn=out_of,
    )
    value, value_error = _expected_spend(settings.raw_dir, snap)
    offer, offers_by = _variant_offer(settings, conf, trained, frame)
    scored = score_frame(
        trained,
        frame,
        snapshot=snap,
        lead_days=lead,
        medium=scoring.bands.medium,
        high=scoring.bands.high,
        model_version=f"{ctx.name}/{version}",
        contact_bands=scoring.contact_bands,
        exact_drivers=scoring.drivers == "treeshap",
        value=value,
        offer=offer,
    )
    build = read_manifest(settings.features_dir)
    written = dt.datetime.now(dt.UTC)
    info = ListInfo(
        model_name=ctx.name,
        model_version=version,
        horizon_days=trained.horizon_days,
        as_of=snap,
        written_at=written,
        calibration=trained.propensity.calibration_["method"],
        medium=scoring.bands.medium,
        high=scoring.bands.high,
        contact_bands=tuple(scoring.contact_bands),
        lead_days=lead,
        active_days=scoring.active_days,
        withdrawn=excluded if out_of is not None else None,
        drivers=scoring.drivers,
        feature_build=build.fingerprint or "",
        features_built_at=build.built_at,
        value_error=value_error,
        propensity=trained.propensity.kind,
        selection_reason=(trained.selection or {}).get("reason"),
        value_interval=None if value is None else value.attrs.get("interval", {}).get("90d"),
        offers_by=offers_by,
    )
    target = _new_list_folder(settings.lists_dir / ctx.name, snap, written)
    with staged_dir(target) as tmp:
        write_list(scored, tmp, info)
    latest = _point_latest(target)
    return target, {
        **summary(scored),
        "as_of": snap.isoformat(),
        "model": f"models:/{ctx.name}@{CHAMPION} (v{version})",
        "name": ctx.name,
        "withdrawn_consent": excluded,
        "consent_log": out_of is not None,
        "horizon_days": trained.horizon_days,
        "calibration": info.calibration,
        "latest": str(latest),
        "expected_spend_90d": None if value_error else float(scored.expected_spend_90d.sum()),
        "expected_spend_error": value_error,
    }


def _variant_offer(settings: Settings, conf: Conf, trained, frame: pd.DataFrame):
    """For a fairness-mitigated champion: who it offers to, given the probabilities (its
    post-processor on each shopper's group, read from the users table), and that in words;
    (None, None) for a model that offers by band."""
    post = trained.postprocess
    if post is None:
        return None, None
    from cadence.audits import groupings
    from cadence.flows.steps.audits import users_table, variant_decisions

    audits = conf.audits
    ids = frame.user_id.astype(str).reset_index(drop=True)
    groups = groupings(
        users_table(settings.raw_dir, [*audits.sensitive, *audits.proxies]),
        ids,
        sensitive=audits.sensitive,
        proxies=audits.proxies,
        intersections=audits.intersections,
    )

    def offer(p: np.ndarray) -> np.ndarray:
        return variant_decisions(post, p, ids, groups)

    said = (
        f"ThresholdOptimizer ({post['constraints'].replace('_', ' ')}, on "
        f"{post['attribute']}; the group is the post-processor's input, never a feature)"
    )
    return offer, said


def _expected_spend(raw: Path, snap: pd.Timestamp) -> tuple[pd.DataFrame | None, str | None]:
    """Each shopper's expected spend in the 90 days after the snapshot, fitted on the orders
    before it; None and the reason when the order log cannot identify the models."""
    from cadence.models._value import expected_spend

    orders = _read.orders(raw, ("user_id", "ordered_at", "amount"))
    try:
        return expected_spend(orders, snap, (90,)), None
    except ValueError as e:  # BTYDFitError or ValueFitError: the list goes out without it
        return None, str(e)


def _new_list_folder(parent: Path, as_of: pd.Timestamp, written: dt.datetime) -> Path:
    """`<as-of date>_<UTC run time>`, a name no earlier list holds (a second run within the
    same second gets `-2`), so a list is never overwritten."""
    base = f"{as_of:%Y-%m-%d}_{written.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    target, n = parent / base, 1
    while target.exists() or target.is_symlink():
        n += 1
        target = parent / f"{base}-{n}"
    return target


def _point_latest(target: Path) -> Path:
    """Points `latest` beside `target` at it: a relative link, swapped in with one rename, so
    a reader finds the old list or the new one, never none."""
    link = target.parent / LATEST
    if link.exists() and not link.is_symlink():
        raise ValueError(f"{link} is not a link to a list; move it away and score again")
    tmp = target.parent / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target.name, tmp, target_is_directory=True)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return link


def serving_opt_outs(settings: Settings) -> set[str]:
    """Shoppers the merge service's database says opted out of profiling or withdrew consent
    (empty when there is no service database yet)."""
    if settings.database_url is None and not (settings.home / "serving.db").exists():
        return set()
    from cadence.flows.steps.serving import database
    from cadence.serving._offers import withdrawn_users

    engine = database(settings)
    try:
        with engine.connect() as connection:
            return withdrawn_users(connection)
    finally:
        engine.dispose()


def publish_scores(settings: Settings, name: str) -> str:
    """Loads the model's latest list (lists/<name>/latest) into the online store, in its own
    view (`repurchase_scores` for `repurchase`, `repurchase_7d_scores` for `repurchase-7d`),
    where the service reads a shopper's latest score; returns the list's as-of time."""
    from cadence.features._store import open_store
    from cadence.features._store import publish_scores as publish

    store = open_store(settings.feast_dir, settings.online_store)
    return publish(store, settings.lists_dir, name).isoformat()


def backtest(
    settings: Settings,
    conf: Conf,
    horizon: int | None,
    windows: int,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    report: Report = silent,
) -> dict[str, Any]:
    """A rolling-origin backtest: `windows` successive test windows ending at the latest
    labelled snapshots, each judged by a model retrained (with conf/models.yaml's settings) on
    the data before its own calibration and test windows, beside the baselines; per window and
    pooled over the windows, with intervals. Nothing is logged or registered in MLflow: these
    models are judged, never served."""
    from cadence.models._labels import label_rows
    from cadence.models._metrics import classification_metrics
    from cadence.models._split import rolling_splits
    from cadence.models._train import SCORERS, NotEnoughData, evaluate_scores
    from cadence.models._uncertainty import paired_bootstrap

    models = conf.models
    check_horizon(models, horizon)
    if windows < 1:
        raise ValueError(f"--backtest {windows}: a backtest needs 1 or more test windows")
    h = horizon or models.horizon_days
    _lineage.fresh_features(settings)
    started = time.perf_counter()
    frame, log, end = _data(settings)
    buyers, least = log.user_id.nunique(), models.training.min_buyers
    if buyers < least:
        raise NotEnoughData(f"{buyers} buyers in the orders; training needs at least {least}")
    split_conf = models.split
    try:
        splits = rolling_splits(
            sorted(frame.snapshot_at.unique()),
            end=end,
            horizon_days=h,
            test=split_conf.test_snapshots,
            calibrate=split_conf.calibrate_snapshots,
            windows=windows,
        )
    except ValueError as exc:
        raise ValueError(f"--backtest {windows}: {exc}") from exc
    oracle = _read.oracle(settings.truth_dir)
    features = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    labelled = label_rows(frame, log, horizons=(h,), end=end)
    y_col = f"y_{h}d"
    out_windows, pooled_y, pooled_users = [], [], []
    pooled_scores: dict[str, list] = {}
    for i, split in enumerate(splits, start=1):
        report(Progress("backtest", f"window {i}: test {split.window('test')}", i - 1, windows))
        rows = labelled.assign(slice=split.slice_of(labelled.snapshot_at))
        rows = rows[rows.slice.notna() & rows[y_col].notna()]
        trained = fit_configured(rows, features, split, models.training)
        rep, y, scores = evaluate_scores(trained, rows, log, oracle, resamples=resamples)
        test = rows[rows.slice == "test"]
        out_windows.append(
            {
                "window": i,
                **{f"{name}_window": split.window(name) for name in ("train", "calibrate", "test")},
                "n_test": len(test),
                "customers": int(test.user_id.nunique()),
                "propensity": trained.propensity.kind,
                "selection": trained.selection,
                **rep,
            }
        )
        pooled_y.append(y)
        pooled_users.append(test.user_id.to_numpy())
        for name, p in scores.items():
            pooled_scores.setdefault(name, []).append(p)
    report(Progress("backtest", "pooling the windows", windows, windows))
    y_all = np.concatenate(pooled_y)
    # A scorer counts in the pool only where it scored every window (the oracle may not).
    scores_all = {
        name: np.concatenate(ps)
        for name, ps in pooled_scores.items()
        if len(ps) == windows and name in SCORERS
    }
    pooled: dict[str, Any] = {
        "n_test": len(y_all),
        "customers": int(pd.unique(np.concatenate(pooled_users)).size),
        **{name: classification_metrics(y_all, p) for name, p in scores_all.items()},
        # Clustered on customers across every window: one shopper's rows go together.
        "intervals": paired_bootstrap(
            y_all, scores_all, np.concatenate(pooled_users), resamples=resamples
        ),
    }
    return {
        "horizon_days": h,
        "windows": out_windows,
        "pooled": pooled,
        "seconds": time.perf_counter() - started,
    }
