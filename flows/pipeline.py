"""The Prefect flows: `ingest`, `build_features`, `train`, `audit`, `promote`, `score`,
`pipeline`, and the merge service's `consolidate`.

Each flow reads the settings when it starts, wraps the steps as tasks and logs their progress
to the run's log. Parameters are Pydantic models, so the Prefect UI shows them as a form.

Resuming: a flow re-run after a fault does again only what the fault left undone. A world of
the same settings is not regenerated (same seed, same bytes) and an order log with the same
bytes is not re-imported; feature batches are cached on the raw files' fingerprint and their
snapshot dates; training is cached on the fingerprints of the features and orders and on the
decisions. Nothing a step writes is visible until it is whole (staged folders), and the
champion moves only when every gate passes, so a failure leaves the champion and the lists
as they were.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from cadence.flows import _fingerprint
from cadence.flows.params import (
    AuditParams,
    ConsolidateParams,
    FeaturesParams,
    IngestParams,
    PipelineParams,
    PromoteParams,
    RouteParams,
    ScoreParams,
    TrainParams,
)
from cadence.flows.settings import Settings
from cadence.flows.steps._progress import Progress

# --- helpers ----------------------------------------------------------------------------------


def _report(step: str):
    logger = get_run_logger()

    def report(event: Progress) -> None:
        count = f" ({event.done}/{event.total})" if event.total else ""
        logger.info("%s: %s%s", step, event.message, count)

    return report


def _results(settings: Settings) -> Path:
    return (settings.home / "prefect" / "results").resolve()


def _outside(settings: Settings, fn):
    """A task that talks to an outside service retries, as conf/flows.yaml says."""
    conf = settings.decisions().flows
    return fn.with_options(retries=conf.retries, retry_delay_seconds=conf.retry_delay_seconds)


# --- ingest -----------------------------------------------------------------------------------


@task(name="generate-world", cache_policy=NONE)
def _generate_world(settings: Settings, params: IngestParams) -> dict[str, Any]:
    from cadence.flows.steps import world as step
    from cadence.ingest import read_manifest

    cfg = step.world_config(
        settings.decisions().world,
        users=params.users,
        days=params.days,
        seed=params.seed,
        start=params.start,
    )
    if not params.force and step.unchanged(settings.raw_dir, settings.truth_dir, cfg):
        get_run_logger().info("the workspace already holds this world; not regenerated")
        manifest = read_manifest(settings.raw_dir)
    else:
        manifest = step.generate(cfg, settings.raw_dir, settings.truth_dir, report=_report("world"))
    return manifest.model_dump(mode="json")


@task(name="import-orders", cache_policy=NONE)
def _import_orders(settings: Settings, params: IngestParams) -> dict[str, Any]:
    from cadence.flows.steps import ingest as step
    from cadence.ingest import read_manifest

    assert params.file is not None and params.customer and params.timestamp
    options = params.import_options()
    if not params.force and step.unchanged(settings.raw_dir, params.file, **options):
        get_run_logger().info("the workspace already holds this order log; not re-imported")
        manifest = read_manifest(settings.raw_dir)
        assert manifest is not None
        return manifest.model_dump(mode="json")
    result = step.import_order_log(
        params.file,
        settings.raw_dir,
        **options,
        truth=settings.truth_dir,
        replace=params.replace,
    )
    if result.bad_rows:
        get_run_logger().warning("left out %d bad %s(s)", len(result.bad_rows), result.unit)
    return result.manifest.model_dump(mode="json")


@task(name="validate", cache_policy=NONE)
def _validate(settings: Settings) -> None:
    from cadence.flows.steps import ingest as step

    violations, _, _ = step.validate(settings.raw_dir)
    if violations:
        raise ValueError(
            f"{len(violations)} contract violation(s) in {settings.raw_dir}: "
            + "; ".join(str(v) for v in violations[:5])
        )


@flow(name="ingest")
def ingest(params: IngestParams = IngestParams()) -> dict[str, Any]:
    """Generate the simulated world or import an order log into raw/; validate it."""
    settings = Settings()
    settings.decisions().check()
    fn = _generate_world if params.source == "world" else _import_orders
    manifest = fn(settings, params)
    _validate(settings)
    return manifest


# --- features ---------------------------------------------------------------------------------


def _given_key(_context, parameters: dict[str, Any]) -> str:
    """Pure, expensive tasks take their cache key as a parameter: file fingerprints and
    dates, computed by the flow (never a hash of a data frame)."""
    return parameters["key"]


@task(name="feature-batch", cache_key_fn=_given_key, persist_result=True)
def _feature_batch(plan, snapshots: list[dt.datetime], engine: str, build: str, key: str):
    """One batch; the build's inputs are read once per process (`step.shared_build`), by the
    first of its batches to run there."""
    from cadence.flows.steps import features as step

    prepared = step.shared_build.get(plan, engine, build)
    return step.compute_batch(plan, snapshots, engine, prepared)


@task(name="materialize", cache_policy=NONE)
def _materialize(settings: Settings) -> str:
    from cadence.flows.steps import features as step

    s = settings
    step.apply(s.features_dir, s.feast_dir, s.online_store, lists_dir=s.lists_dir)
    end = step.materialize(s.features_dir, s.feast_dir, s.online_store, raw=s.raw_dir)
    return end.isoformat()


def task_runner(settings: Settings):
    """Threads by default; a Dask cluster (prefect-dask) when conf/flows.yaml says `dask`."""
    conf = settings.decisions().flows
    if conf.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if conf.dask_address:
            return DaskTaskRunner(address=conf.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": conf.workers, "threads_per_worker": 1, "processes": True}
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=conf.workers)


@flow(name="build_features")
def build_features(params: FeaturesParams = FeaturesParams()) -> dict[str, Any]:
    """Build every feature as of each snapshot (batches in parallel), register the views in
    Feast and materialise the latest snapshot to the online store."""
    from cadence.features import parse_snapshots, read_manifest
    from cadence.flows.steps import features as step

    settings = Settings()
    conf = settings.decisions()
    logger = get_run_logger()
    snaps = parse_snapshots(params.snapshots) if params.snapshots else None
    workers = conf.flows.workers
    plan = step.plan_build(settings.raw_dir, snaps, conf.features, min_batches=workers)
    raw_key = _fingerprint.files(settings.raw_dir)
    if not params.force and step.unchanged(settings.features_dir, plan, raw_key, params.engine):
        logger.info("features are up to date with the raw data; not rebuilt")
        manifest = read_manifest(settings.features_dir)
    else:
        batch = _feature_batch.with_options(result_storage=_results(settings))
        # The batches run on the runner conf/flows.yaml names (threads or a Dask cluster),
        # however the flow is started: `cadence run`, the pipeline or a deployment.
        build = _fingerprint.of("build", raw_key, params.engine, plan.snapshots)

        def submit(runner, s: list[dt.datetime]):
            key = _fingerprint.of("features", raw_key, params.engine, s)
            args = {"plan": plan, "snapshots": s, "engine": params.engine, "build": build}
            return runner.submit(batch, {**args, "key": key})

        def in_order(runner) -> Iterator[Any]:
            """The batches' results in order, with at most one more batch in flight than
            there are workers: a finished batch waits in memory only until it is written."""
            pending: deque = deque()
            todo = iter(plan.batches)
            for s in itertools.islice(todo, workers + 1):
                pending.append(submit(runner, s))
            while pending:
                result = pending.popleft().result()
                for s in itertools.islice(todo, 1):
                    pending.append(submit(runner, s))
                yield result

        try:
            with task_runner(settings) as runner:
                manifest = step.write_build(
                    plan,
                    in_order(runner),
                    settings.features_dir,
                    params.engine,
                    raw_fingerprint=raw_key,
                    report=_report("features"),
                )
        finally:
            step.shared_build.release()
    out: dict[str, Any] = {
        "user_features": manifest.user_features,
        "rows": manifest.rows,
        "snapshots": len(manifest.snapshots),
    }
    if params.materialize:
        out["online_as_of"] = _outside(settings, _materialize)(settings)
    return out


# --- models -----------------------------------------------------------------------------------


@task(name="train-repurchase", cache_key_fn=_given_key, persist_result=True)
def _train(settings: Settings, horizon: int | None, key: str) -> dict[str, Any]:
    from cadence.flows.steps import models as step

    ctx = step.context(settings, settings.decisions(), horizon, training=True)
    out = step.train(ctx, report=_report("train"))
    return {k: v for k, v in out.items() if k != "stages"}


@flow(name="train")
def train(params: TrainParams = TrainParams()) -> dict[str, Any]:
    """Train the repurchase models, evaluate them beside the baselines, register a challenger.
    Cached: the same features, orders and decisions do not train twice."""
    from cadence.flows.steps._lineage import fresh_features

    settings = Settings()
    conf = settings.decisions()
    fresh_features(settings)  # stale features stop the flow, cached result or not
    key = _fingerprint.of(
        "train",
        _fingerprint.files(settings.features_dir),
        _fingerprint.files(settings.raw_dir, "orders.parquet"),
        conf.models.model_dump(mode="json"),
        params.horizon,
        settings.mlflow_tracking_uri or str(settings.mlflow_dir.resolve()),
    )
    fn = _outside(settings, _train).with_options(result_storage=_results(settings))
    return fn(settings, params.horizon, key)


@task(name="audit-repurchase", cache_policy=NONE)
def _audit(settings: Settings, params: AuditParams) -> dict[str, Any]:
    from cadence.flows.steps import audits as step

    folder, doc = step.run_audit(
        settings,
        settings.decisions(),
        params.model,
        horizon=params.horizon,
        report=_report("audit"),
    )
    if params.out is not None:
        step.copy_out(folder, params.out)
    for x in doc["not_passing"]:
        get_run_logger().info("%s %s: %s", x["status"], x["grouping"], x["check"])
    return {
        "audited": True,
        "model": doc["model"]["uri"],
        "version": doc["model"]["version"],
        "verdict": doc["verdict"],
        "not_passing": doc["not_passing"],
        "report": str(folder / "audit.html"),
        "folder": str(folder),
        "seconds": doc["seconds"],
    }


@flow(name="audit")
def audit(params: AuditParams = AuditParams()) -> dict[str, Any]:
    """The fairness audit of the newest challenger (else the champion): report files under
    reports/audits/, kept per model version and logged to the model's MLflow run. A FAIL is
    a result, not an error: the promotion gate acts on it."""
    from cadence.flows.steps import models as step

    settings = Settings()
    if not step.has_models(settings):
        get_run_logger().warning("no models in %s yet: nothing audited", settings.mlflow_dir)
        return {"audited": False}
    return _outside(settings, _audit)(settings, params)


@task(name="promote-repurchase", cache_policy=NONE)
def _promote(settings: Settings, params: PromoteParams) -> dict[str, Any]:
    from cadence.flows.steps import models as step
    from cadence.models._registry import CHALLENGER, CHAMPION, alias_version

    ctx = step.context(settings, settings.decisions(), params.horizon)
    champion = alias_version(ctx.name, CHAMPION)
    if alias_version(ctx.name, CHALLENGER) is None and champion is not None:
        get_run_logger().info("no challenger waiting; v%s stays champion", champion)
        return {"promoted": False, "version": champion, "gates": [], "champion": champion}
    promoted, results, version = step.promote(ctx, params.reason, report=_report("promote"))
    for r in results:
        get_run_logger().info("%s %s: %s", "pass" if r.passed else "FAIL", r.gate, r.detail)
    return {
        "promoted": promoted,
        "version": version,
        "gates": [r.__dict__ for r in results],
        "champion": alias_version(ctx.name, CHAMPION),
    }


@flow(name="promote")
def promote(params: PromoteParams = PromoteParams()) -> dict[str, Any]:
    """Run the configured gates on the challenger; it becomes champion only if all pass."""
    settings = Settings()
    return _outside(settings, _promote)(settings, params)


@task(name="score-repurchase", cache_policy=NONE)
def _score(settings: Settings, params: ScoreParams) -> dict[str, Any]:
    import pandas as pd

    from cadence.flows.steps import models as step

    conf = settings.decisions()
    ctx = step.context(settings, conf)
    as_of = pd.Timestamp(params.as_of, tz="UTC") if params.as_of else None
    target, info = step.score(ctx, conf, as_of, params.lead_days)
    info["list"] = str(target)
    info["online"] = step.publish_scores(settings, ctx.name)
    return info


@task(name="drift-check", cache_policy=NONE)
def _drift(settings: Settings) -> dict[str, Any]:
    from cadence.flows.drift import check_drift

    return check_drift(settings, report=_report("drift"))


@flow(name="score")
def score(params: ScoreParams = ScoreParams()) -> dict[str, Any]:
    """Score the active shoppers with the champion: the list under lists/, and the scores
    in the online store for the service to read; then the drift check, which starts `train`
    when the champion's inputs, score or realised AUC moved beyond the limits."""
    from cadence.flows.steps import models as step
    from cadence.models._registry import CHAMPION, alias_version

    settings = Settings()
    conf = settings.decisions()
    if not step.has_models(settings):
        get_run_logger().warning("no models in %s yet: nothing scored", settings.mlflow_dir)
        return {"scored": False}
    ctx = step.context(settings, conf)
    if alias_version(ctx.name, CHAMPION) is None:
        get_run_logger().warning("%s has no champion yet: nothing scored", ctx.name)
        return {"scored": False}
    info = _outside(settings, _score)(settings, params)
    if params.drift:
        info["drift"] = _drift(settings)
    return info


# --- the whole pipeline -------------------------------------------------------------------


@flow(name="pipeline")
def pipeline(params: PipelineParams = PipelineParams()) -> dict[str, Any]:
    """ingest -> build_features -> train -> audit -> promote -> score, in order; promotion's
    fairness gate reads the audit made just before it."""
    settings = Settings()
    settings.decisions().check()
    out: dict[str, Any] = {"ingest": ingest(params.ingest)}
    out["features"] = build_features(params.features)
    out["train"] = train(params.train)
    out["audit"] = audit(params.audit)
    out["promote"] = promote(params.promote)
    out["score"] = score(params.score)
    from cadence.flows.steps.routing import not_ready

    why = not_ready(settings, settings.decisions())
    out["route"] = {"skipped": why} if why else route(params.route)
    return out


# --- the merge service ---------------------------------------------------------------------


@task(name="consolidate", cache_policy=NONE)
def _consolidate(settings: Settings, ship_date: dt.date) -> dict[str, Any]:
    from cadence.flows.steps import serving as step

    return step.consolidate(settings, settings.decisions(), ship_date)


@flow(name="consolidate")
def consolidate(params: ConsolidateParams = ConsolidateParams()) -> dict[str, Any]:
    """Plan a ship date's orders in the service database: exits checked again, confirmed
    orders merged into fuller parcels and fewer batches, the plan kept beside its read-out."""
    settings = Settings()
    settings.decisions().check()
    day = params.ship_date or dt.datetime.now(dt.UTC).date()
    summary = _outside(settings, _consolidate)(settings, day)
    m, b = summary["merged"], summary["baseline"]
    get_run_logger().info(
        "plan %s for %s: %d parcels (unmerged %d), %d batches (unmerged %d), %d exits",
        summary["plan_id"],
        day,
        m["parcels"],
        b["parcels"],
        m["batches"],
        b["batches"],
        len(summary["exits"]),
    )
    return summary


# --- routing ------------------------------------------------------------------------------


@task(name="train_routing", cache_policy=NONE)
def _train_routing(settings: Settings) -> dict[str, Any]:
    from cadence.flows.steps import routing as step

    return step.train(settings, settings.decisions(), report=_report("train routing"))


@task(name="promote_routing", cache_policy=NONE)
def _promote_routing(settings: Settings, reason: str | None) -> dict[str, Any]:
    from cadence.flows.steps import routing as step

    promoted, results, version = step.promote(
        settings, settings.decisions(), reason, report=_report("promote routing")
    )
    return {"promoted": promoted, "version": version, "gates": [r.__dict__ for r in results]}


@task(name="evaluate_routing", cache_policy=NONE)
def _evaluate_routing(settings: Settings, days: int) -> dict[str, Any]:
    from cadence.flows.steps import routing as step

    return step.evaluate(settings, settings.decisions(), days, None, report=_report("route"))


@flow(name="route")
def route(params: RouteParams = RouteParams()) -> dict[str, Any]:
    """Train the routing models, run their gates (champion only if all pass), and replay the
    held-out days through nearest, greedy, optimal and clairvoyant routing."""
    settings = Settings()
    conf = settings.decisions()
    conf.check()
    days = params.days or conf.routing.holdout_days
    out: dict[str, Any] = {"train": _outside(settings, _train_routing)(settings)}
    out["promote"] = _outside(settings, _promote_routing)(settings, params.reason)
    out["evaluate"] = _outside(settings, _evaluate_routing)(settings, days)
    s = out["evaluate"]["strategies"]
    get_run_logger().info(
        "routing v%s: optimal %.3f per order against nearest %.3f (%+.1f%%), next day %.1f%%",
        out["train"]["version"],
        s["optimal"]["cost_per_order"],
        s["nearest"]["cost_per_order"],
        100 * s["optimal"]["cost_vs_nearest"],
        100 * s["optimal"]["next_day_rate"],
    )
    return out


FLOWS = {
    "ingest": ingest,
    "build_features": build_features,
    "train": train,
    "audit": audit,
    "promote": promote,
    "score": score,
    "pipeline": pipeline,
    "consolidate": consolidate,
    "route": route,
}
