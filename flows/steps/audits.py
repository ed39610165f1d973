"""Audit step: the fairness audit of a registered repurchase model, its report files, its
history per model version, and its record on the model's MLflow run.

Each audit is kept under reports/audits/<model>/v<version>/<UTC time>/ (audit.json,
audit.html, model_card.md), written through a staged folder; nothing earlier is changed. The
promotion gate reuses the newest audit of the challenger when it was made from the same
features and decisions, and audits afresh otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cadence.flows import _fingerprint
from cadence.flows.conf import AuditsConf, Conf
from cadence.flows.settings import Settings
from cadence.flows.steps import _lineage
from cadence.flows.steps._progress import Progress, Report, silent
from cadence.flows.steps.models import ModelContext, _rows_for, context

if TYPE_CHECKING:
    from cadence.audits import Groupings

FILES = ("audit.html", "audit.json", "model_card.md")


def settings_of(conf: AuditsConf):
    """conf/audits.yaml as the audits stage takes it."""
    from cadence.audits import AuditSettings, Limits

    return AuditSettings(
        sensitive=tuple(conf.sensitive),
        proxies=tuple(conf.proxies),
        intersections=tuple(tuple(i) for i in conf.intersections),
        gated=tuple(conf.gated),
        min_group_shoppers=conf.min_group_shoppers,
        resamples=conf.resamples,
        level=conf.level,
        seed=conf.seed,
        limits=Limits(**conf.thresholds.model_dump()),
        mitigation=conf.mitigation.constraints,
        mitigation_objective=conf.mitigation.objective,
    )


def operating_threshold(conf: Conf) -> float:
    """The lowest probability that gets an offer: the bottom of the lowest contact band."""
    scoring = conf.models.scoring
    edges = {"high": scoring.bands.high, "medium": scoring.bands.medium, "low": 0.0}
    return min(edges[b] for b in scoring.contact_bands)


def resolve(ctx: ModelContext, uri: str | None) -> tuple[str, str]:
    """(URI, version) of the model to audit: the one given, else the newest challenger, else
    the champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from cadence.models._registry import CHALLENGER, CHAMPION, alias_version

    if uri is None:
        for alias in (CHALLENGER, CHAMPION):
            version = alias_version(ctx.name, alias)
            if version is not None:
                return f"models:/{ctx.name}/{version}", version
        raise ValueError(f"{ctx.name} has no challenger or champion: run `cadence train` first")
    if not uri.startswith("models:/"):
        raise ValueError(
            f"--model {uri}: expected models:/<name>/<version> or models:/<name>@<alias>"
        )
    rest = uri.removeprefix("models:/")
    name, _, version = rest.partition("/")
    client = MlflowClient()
    try:
        if "@" in name and not version:
            name, alias = name.split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
        else:
            client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"--model {uri}: no such model version in the registry") from exc
    if name != ctx.name:
        raise ValueError(
            f"--model {uri}: a {name} model, but the horizon selects {ctx.name} (--horizon)"
        )
    return f"models:/{name}/{version}", version


def users_table(raw: Path, columns: list[str]) -> pd.DataFrame | None:
    path = raw / "users.parquet"
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    present = [c for c in ["user_id", *columns] if c in pq.read_schema(path).names]
    return pd.read_parquet(path, columns=present)


def _offers(raw: Path) -> pd.DataFrame | None:
    path = raw / "offers.parquet"
    return pd.read_parquet(path) if path.exists() else None


def service_offers(settings: Settings) -> pd.DataFrame | None:
    """The merge service's offers (each with whether it was ever confirmed); None without a
    service database."""
    if settings.database_url is None and not (settings.home / "serving.db").exists():
        return None
    from cadence.flows.steps.serving import database
    from cadence.serving._tables import Confirmation, Offer

    engine = database(settings)
    try:
        with engine.connect() as connection:
            offers = pd.read_sql_table(Offer.__tablename__, connection)
            confirmed = pd.read_sql_table(Confirmation.__tablename__, connection)
    finally:
        engine.dispose()
    return offers.assign(confirmed=offers.offer_id.isin(confirmed.offer_id))


def routing_of(settings: Settings, conf: Conf) -> dict[str, Any] | None:
    """The audit's routing section, from the latest saved `route evaluate` read-out."""
    from cadence.audits._routing import routing_section
    from cadence.flows.steps.routing import latest_evaluation

    return routing_section(
        latest_evaluation(settings), limit=conf.routing.promotion.max_next_day_drop
    )


def merging_of(settings: Settings, conf: Conf, *, name: str) -> dict[str, Any] | None:
    """The audit's merging section: the service's offers per group, and cohort parity."""
    from cadence.audits._merging import merging_section

    offers = service_offers(settings)
    if offers is None or offers.empty:
        return None
    attributes = [*conf.audits.sensitive, *conf.audits.proxies]
    latest = settings.lists_dir / name / "latest" / "scores.parquet"
    listed = pd.read_parquet(latest, columns=["user_id"]).user_id if latest.exists() else None
    return merging_section(
        offers,
        users=users_table(settings.raw_dir, attributes),
        listed=listed,
        attributes=attributes,
    )


def variant_decisions(
    post: dict, p: np.ndarray, user_ids: pd.Series, groups: Groupings
) -> np.ndarray:
    """Who a mitigated variant offers to: its post-processor on the probability and the
    shopper's group under the attribute it was fitted for."""
    from cadence.audits import decisions

    attribute = post["attribute"]
    if attribute not in groups.labels:
        why = groups.missing.get(attribute, "it is not among conf/audits.yaml's groupings")
        raise ValueError(
            f"the model's offers are decided per {attribute} group, and {attribute} cannot be "
            f"formed: {why}"
        )
    return decisions(post, p, groups.labels[attribute], user_ids, post["seed"])


def inputs_key(settings: Settings, conf: Conf, version: str) -> str:
    """What an audit was made from: the model version, the features, the raw users and offers
    tables, and the decisions. The gate reuses an audit only when this matches."""
    return _fingerprint.of(
        version,
        _lineage.lineage(settings),
        _fingerprint.files(settings.raw_dir, "users.parquet"),
        _fingerprint.files(settings.raw_dir, "offers.parquet"),
        _service_offers_key(settings),
        conf.audits.model_dump(mode="json"),
        conf.models.scoring.model_dump(mode="json"),
    )


def _service_offers_key(settings: Settings) -> str:
    """How many offers the merge service holds and when the last one changed."""
    offers = service_offers(settings)
    if offers is None or offers.empty:
        return "no service offers"
    return f"{len(offers)} offers, last changed {offers.changed_at.max()}"


def history_dir(settings: Settings, name: str, version: str) -> Path:
    return settings.reports_dir / "audits" / name / f"v{version}"


def latest_audit(settings: Settings, name: str, version: str) -> tuple[Path, dict] | None:
    """The newest audit kept for a model version: (its folder, its JSON)."""
    folder = history_dir(settings, name, version)
    if not folder.is_dir():
        return None
    for run in sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True):
        doc = run / "audit.json"
        if doc.is_file() and not run.name.startswith("."):
            return run, json.loads(doc.read_text(encoding="utf-8"))
    return None


def _previous_champion(name: str, version: str) -> str | None:
    """The champion the audited version is measured against: the current champion, or for
    the champion itself, the one it replaced."""
    from mlflow import MlflowClient

    from cadence.models._registry import CHAMPION, alias_version

    champion = alias_version(name, CHAMPION)
    if champion is not None and champion != version:
        return champion
    if champion == version:
        previous = MlflowClient().get_model_version(name, version).tags.get("previous_champion")
        return previous or None
    return None


def _movement(doc: dict, before: dict | None, before_version: str | None) -> dict[str, Any]:
    """Each gap's estimate now and in the previous champion's newest audit."""
    if before_version is None:
        return {"note": "no champion before this model: nothing to compare with"}
    if before is None:
        return {
            "champion_version": before_version,
            "note": f"no audit of v{before_version} is kept in this workspace",
        }
    rows = []
    then = before["targeting"]["sections"]
    for name, section in doc["targeting"]["sections"].items():
        for gap, now in section.get("gaps", {}).items():
            old = then.get(name, {}).get("gaps", {}).get(gap)
            rows.append(
                {
                    "grouping": name,
                    "gap": gap,
                    "now": now["estimate"],
                    "before": None if old is None else old["estimate"],
                }
            )
    return {
        "champion_version": before_version,
        "audited_at": before.get("audited_at"),
        "gaps": rows,
    }


def run_audit(
    settings: Settings,
    conf: Conf,
    uri: str | None = None,
    *,
    horizon: int | None = None,
    report: Report = silent,
) -> tuple[Path, dict[str, Any]]:
    """Audits a registered model (default: the horizon's newest challenger, else its
    champion); keeps the report in its version's history and on its MLflow run. Returns
    (folder, document)."""
    from cadence.audits import Scored, audit, groupings, proxy_risk
    from cadence.models._metrics import classification_metrics
    from cadence.models._registry import load

    started = time.perf_counter()
    ctx = context(settings, conf, horizon)
    lineage = _lineage.fresh_features(settings)
    uri, version = resolve(ctx, uri)
    report(Progress("audit", f"auditing {uri}: reading and scoring its rows", 0, 4))
    trained = load(uri)
    rows, _ = _rows_for(settings, trained)
    scoring = conf.models.scoring
    rows = rows[rows.days_since_last_order.to_numpy(float) <= scoring.active_days]
    y_col = f"y_{trained.horizon_days}d"
    audits_conf = conf.audits
    decided = settings_of(audits_conf)
    users = users_table(settings.raw_dir, [*audits_conf.sensitive, *audits_conf.proxies])

    def part(slice_: str):
        sub = rows[rows.slice == slice_].reset_index(drop=True)
        scored = Scored(
            user_ids=sub.user_id.astype(str),
            y=sub[y_col].to_numpy(int),
            p=trained.predict(sub).probability.to_numpy(float),
        )
        groups = groupings(
            users,
            scored.user_ids,
            sensitive=audits_conf.sensitive,
            proxies=audits_conf.proxies,
            intersections=audits_conf.intersections,
        )
        return sub, scored, groups

    test_rows, test, test_groups = part("test")
    _, cal, cal_groups = part("calibrate")
    threshold = operating_threshold(conf)
    report(Progress("audit", f"targeting checks on {len(test.y):,} rows", 1, 4))
    post = trained.postprocess
    offered = None
    if post is not None:  # a mitigated variant: its own decisions, and nothing to mitigate
        offered = variant_decisions(post, test.p, test.user_ids, test_groups)
    doc = audit(
        test,
        test_groups,
        threshold=threshold,
        settings=decided,
        calibration=cal if len(cal.y) and post is None else None,
        calibration_groups=cal_groups if len(cal.y) and post is None else None,
        offers=_offers(settings.raw_dir),
        offered=offered,
        merging=merging_of(settings, conf, name=ctx.name),
        routing=routing_of(settings, conf),
    )
    if post is not None:
        doc["mitigation"] = {
            "note": f"this version is the {post['constraints'].replace('_', ' ')} variant of "
            f"v{post.get('variant_of', '?')}: its offers are decided by ThresholdOptimizer "
            f"on {post['attribute']}",
            "postprocessor": post,
        }
    report(Progress("audit", "proxy risk", 2, 4))
    last = test_rows[test_rows.snapshot_at == test_rows.snapshot_at.max()].reset_index(drop=True)
    last_groups = groupings(
        users,
        last.user_id.astype(str),
        sensitive=audits_conf.sensitive,
        proxies=(),
        intersections=(),
    )
    doc["proxy_risk"] = {
        "snapshot": str(last.snapshot_at.max()),
        "attributes": proxy_risk(
            last[list(trained.features)],
            last_groups.labels,
            folds=audits_conf.proxy_folds,
            top=audits_conf.proxy_top_features,
            max_rows=audits_conf.proxy_max_rows,
            seed=audits_conf.seed,
            n_jobs=conf.models.training.n_jobs,
        ),
        "missing": dict(last_groups.missing),
    }
    name = ctx.name
    doc.update(
        {
            "performance": classification_metrics(test.y, test.p),
            "model": {
                "name": name,
                "version": version,
                "uri": uri,
                "propensity": trained.propensity.kind,
                "horizon_days": trained.horizon_days,
                "features": len(trained.features),
                "train_window": trained.split.window("train"),
                "calibrate_window": trained.split.window("calibrate"),
                "test_window": trained.split.window("test"),
            },
            "data": {
                "window": trained.split.window("test"),
                "population": f"shoppers with an order in the {scoring.active_days} days "
                "before each test snapshot",
                "features_fingerprint": lineage["features"],
                "raw_fingerprint": lineage["raw"],
            },
            "thresholds": audits_conf.thresholds.model_dump(),
            "settings": audits_conf.model_dump(mode="json"),
            "operating_threshold": threshold,
            "inputs_key": inputs_key(settings, conf, version),
            "audited_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    before_version = _previous_champion(name, version)
    before = latest_audit(settings, name, before_version) if before_version else None
    doc["history"] = _movement(doc, before[1] if before else None, before_version)
    report(Progress("audit", "writing the report", 3, 4))
    doc["seconds"] = round(time.perf_counter() - started, 1)
    folder = write_report(settings, name, version, doc)
    log_to_run(name, version, folder, doc)
    report(Progress("audit", f"verdict {doc['verdict']}", 4, 4))
    return folder, doc


def write_report(settings: Settings, name: str, version: str, doc: dict) -> Path:
    """The three files in a new folder of the version's history, written whole or not at all."""
    from cadence.audits import model_card, render_html
    from cadence.ingest import staged_dir

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = history_dir(settings, name, version)
    target, n = parent / stamp, 1
    while target.exists():
        n += 1
        target = parent / f"{stamp}-{n}"
    with staged_dir(target) as tmp:
        (tmp / "audit.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        (tmp / "audit.html").write_text(render_html(doc), encoding="utf-8")
        (tmp / "model_card.md").write_text(model_card(doc), encoding="utf-8")
    return target


def copy_out(folder: Path, out: Path) -> list[Path]:
    """Copies the report's files into `out` (made if missing); other files there stay."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(folder / f, out / f)) for f in FILES]


def log_to_run(name: str, version: str, folder: Path, doc: dict) -> None:
    """The verdict, the gaps and the report files on the model version's MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient()
    mv = client.get_model_version(name, version)
    run_id = mv.run_id
    if not run_id:
        return
    client.log_artifacts(run_id, str(folder), f"audit/{folder.name}")
    client.set_tag(run_id, "audit_verdict", doc["verdict"])
    client.set_model_version_tag(name, version, "audit_verdict", doc["verdict"])
    client.set_model_version_tag(name, version, "audit_report", str(folder))
    for grouping, section in doc["targeting"]["sections"].items():
        for gap, value in section.get("gaps", {}).items():
            if value["estimate"] is not None:
                key = f"audit.{grouping.replace(' × ', '_x_')}.{gap}"
                client.log_metric(run_id, key, float(value["estimate"]))
    mitigated = doc.get("mitigation", {})
    if "after" in mitigated:
        for which in ("before", "after"):
            for k, v in mitigated[which].items():
                if isinstance(v, int | float) and np.isfinite(v):
                    client.log_metric(run_id, f"audit.mitigation.{which}.{k}", float(v))


def gate_summary(folder: Path, doc: dict) -> dict[str, Any]:
    """What the promotion gate reads of an audit."""
    return {
        "verdict": doc["verdict"],
        "not_passing": doc["not_passing"],
        "report": str(folder / "audit.html"),
        "folder": str(folder),
    }


def audit_for_gate(ctx: ModelContext, version: str, *, report: Report = silent) -> dict[str, Any]:
    """The challenger's audit for the gate: the newest kept one when it was made from the
    same inputs (model version, features, users, offers, decisions), else a new one."""
    settings = ctx.settings
    conf = settings.decisions()
    kept = latest_audit(settings, ctx.name, version)
    if kept is not None and kept[1].get("inputs_key") == inputs_key(settings, conf, version):
        return gate_summary(*kept)
    uri = f"models:/{ctx.name}/{version}"
    folder, doc = run_audit(settings, conf, uri, horizon=ctx.horizon, report=report)
    return gate_summary(folder, doc)


# The base version's tags a variant shares: what it was trained and judged on.
_SHARED_TAGS = (
    "data_window",
    "train_window",
    "calibrate_window",
    "test_window",
    "feature_service",
    "feature_families",
    "feature_engine",
    "features_fingerprint",
    "horizon_days",
    "selection_reason",
)


def register_mitigated(
    settings: Settings, ctx: ModelContext, version: str, folder: Path
) -> tuple[str, dict[str, Any]]:
    """The `mitigate` policy's step: registers the failing version's ThresholdOptimizer
    variant (from its audit in `folder`) as the new challenger, recording on both versions
    that mitigation was applied and what it cost. Returns (new version, the cost)."""
    import dataclasses

    from mlflow import MlflowClient

    from cadence.models._registry import load, register_variant

    doc = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
    mitigation = doc.get("mitigation", {})
    if "postprocessor" not in mitigation or "after" not in mitigation:
        raise ValueError(
            f"v{version}'s audit holds no mitigated variant to register "
            f"({mitigation.get('note', 'none was fitted')})"
        )
    cost = {
        "constraints": mitigation["constraints"],
        "attribute": mitigation["attribute"],
        "before": mitigation["before"],
        "after": mitigation["after"],
        "variant_verdict_in_base_audit": mitigation["verdict"],
    }
    post = {**mitigation["postprocessor"], "seed": doc["settings"]["seed"], "variant_of": version}
    base = load(f"models:/{ctx.name}/{version}")
    variant = dataclasses.replace(base, postprocess=post)
    client = MlflowClient()
    base_version = client.get_model_version(ctx.name, version)
    base_tags = base_version.tags
    example = _example(settings, base)
    flat = {
        f"mitigation.{which}.{k}": float(v)
        for which in ("before", "after")
        for k, v in mitigation[which].items()
        if isinstance(v, int | float) and np.isfinite(v)
    }
    _, new = register_variant(
        version,
        variant,
        name=ctx.name,
        experiment_id=ctx.experiment,
        params={
            "mitigation_constraints": mitigation["constraints"],
            "mitigation_objective": mitigation["objective"],
            "mitigation_attribute": mitigation["attribute"],
        },
        tags={
            **{k: base_tags[k] for k in _SHARED_TAGS if k in base_tags},
            "mitigation_applied": "true",
            "mitigation_cost": json.dumps(cost),
        },
        metrics=flat,
        example=example,
    )
    client.set_model_version_tag(ctx.name, version, "mitigation_cost", json.dumps(cost))
    base_run = base_version.run_id
    if base_run:
        client.set_tag(base_run, "mitigated_as", f"v{new}")
        for key, value in flat.items():
            client.log_metric(base_run, key, value)
    return new, cost


def _example(settings: Settings, trained) -> pd.DataFrame:
    """A few feature rows, as the registered model's input example."""
    from cadence.flows.steps import _read

    last = max(trained.split.test)
    rows = _read.feature_rows(settings.features_dir, [last]).head(5)
    return rows[list(trained.features)].astype("float64")
