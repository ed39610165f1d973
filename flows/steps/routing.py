"""Routing's steps: train, gate and roll back the models; replay held-out days through the
strategies; plan a day; forecast regional demand and replay its transfers.

Training and planning need a shop's nodes, stock and parcels: an imported order log alone has
none and is refused with the reason. The replays also need the world's truth to score
counterfactual choices, so they run on a simulated shop only.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cadence.flows.settings import Settings
from cadence.flows.steps._progress import Progress, Report, silent
from cadence.models._route_inputs import (
    DAY_US,
    Network,
    RoutingDataError,
    history,
    storms,
)


def network(settings: Settings, conf) -> Network:
    return Network.from_raw(
        settings.raw_dir,
        lead_hours=conf.wave_lead_hours,
        min_carrier_parcels=conf.candidates.min_carrier_parcels,
    )


def node_features(settings: Settings) -> pd.DataFrame | None:
    """The build's node features (`routing_v1`), or None when it made none."""
    path = Path(settings.features_dir) / "nodes.parquet"
    return pd.read_parquet(path) if path.exists() else None


def holdout_start(settings: Settings, days: int) -> pd.Timestamp:
    """The first held-out day: `days` whole days before the data's end."""
    from cadence.ingest import read_end

    end = read_end(settings.raw_dir)
    if end is None:
        raise RoutingDataError(f"no data in {settings.raw_dir}: run the pipeline first")
    return (pd.Timestamp(end).tz_convert("UTC").floor("D")) - pd.Timedelta(days=days)


def truth_for(settings: Settings, net: Network):
    """The world's own cost and time for any parcel: the judge of a replay."""
    import pyarrow.parquet as pq

    from cadence.ingest._manifest import read_manifest
    from cadence.world import Fulfilment, Parcels
    from cadence.world._routing import city_index

    truth_for_check(settings)
    manifest = read_manifest(settings.raw_dir)

    judge = Fulfilment(
        manifest.seed,
        pq.read_table(settings.raw_dir / "nodes.parquet"),
        pq.read_table(settings.raw_dir / "weather.parquet"),
    )

    def truth(rows: pd.DataFrame) -> pd.DataFrame:
        out = judge.outcome(
            Parcels(
                order_id=rows.order_id.to_numpy(np.int64),
                part=rows.part.to_numpy(np.int64),
                node=rows.node.to_numpy(np.int64),
                carrier=rows.carrier.to_numpy(np.int64),
                dest_lat=rows.dest_lat.to_numpy(),
                dest_lon=rows.dest_lon.to_numpy(),
                dest_city=city_index(rows.dest_city.to_numpy()),
                weight_kg=rows.weight_kg.to_numpy(),
                volume_cm3=rows.volume_cm3.to_numpy(),
                fragile=rows.fragile.to_numpy() > 0,
                value=rows.value.to_numpy(),
                ordered_us=rows.ordered_us.to_numpy(np.int64),
                wave_us=rows.wave_us.to_numpy(np.int64),
            )
        )
        ordered = rows.ordered_us.to_numpy(np.int64)
        return pd.DataFrame(
            {
                "cost": out.cost,
                "damage_loss": out.damage_loss,
                "days": (out.delivered_us - ordered) / DAY_US,
                "late": (out.delivered_us > rows.promise_us.to_numpy()).astype(np.float64),
                "delivered_us": out.delivered_us,
                "latest_us": out.delivered_us,
            },
            index=rows.index,
        )

    return truth


def training_data(settings: Settings, net: Network, holdout_days: int, min_parcels: int = 1):
    """The history's parcels as rows: before the held-out days for training, and in them."""
    weather = storms(settings.raw_dir)
    frame, targets = history(settings.raw_dir, net, weather, node_features(settings))
    cut = holdout_start(settings, holdout_days).value // 1000
    train = targets.ordered_us.to_numpy() < cut
    if train.sum() < min_parcels:
        raise RoutingDataError(
            f"only {int(train.sum())} delivered parcels before the held-out {holdout_days} days; "
            f"routing needs at least {min_parcels:,} to learn from "
            "(conf/routing.yaml models.min_parcels)"
        )
    return frame, targets, train, weather


def seconds_since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def _configure(settings: Settings) -> None:
    from cadence.models._registry import configure

    configure(settings.home, settings.mlflow_tracking_uri)


def _boost(conf):
    from cadence.models._route_models import BoostParams

    m = conf.models
    return BoostParams(
        n_estimators=m.n_estimators,
        learning_rate=m.learning_rate,
        max_depth=m.max_depth,
        early_stopping_rounds=m.early_stopping_rounds,
        seed=m.seed,
        n_jobs=m.n_jobs,
        damage_max_depth=m.damage_max_depth,
        damage_learning_rate=m.damage_learning_rate,
    )


def train(settings: Settings, conf, *, report: Report = silent) -> dict[str, Any]:
    """Fits the three models on the parcels before the held-out days, measures them on the
    held-out parcels (also by how often the legacy rule chose the node), registers a
    challenger."""
    from cadence.models._route_models import by_rule_share, fit, metrics, rule_share
    from cadence.models._route_registry import NAME, log_and_register

    t0 = time.perf_counter()
    rc = conf.routing
    report(Progress("train routing", "reading the parcels", 0, 3))
    net = network(settings, rc)
    frame, targets, train_mask, _ = training_data(
        settings, net, rc.holdout_days, rc.models.min_parcels
    )
    features = [c for c in frame.columns if c not in NOT_FEATURES]
    report(Progress("train routing", f"fitting on {int(train_mask.sum()):,} parcels", 1, 3))
    stored = fit(
        frame[train_mask],
        targets[train_mask],
        features=features,
        quantiles=tuple(rc.models.quantiles),
        params=_boost(rc),
        valid_share=rc.models.valid_share,
    )
    held, held_t = frame[~train_mask], targets[~train_mask]
    measured = metrics(stored, held, held_t) if len(held) else {}
    shares = rule_share(targets[train_mask])
    extrapolation = by_rule_share(stored, held, held_t, shares) if len(held) else pd.DataFrame()
    report(Progress("train routing", "registering", 2, 3))
    _configure(settings)
    start = holdout_start(settings, rc.holdout_days)
    run_id, version = log_and_register(
        stored,
        params={
            **rc.models.model_dump(),
            "holdout_days": rc.holdout_days,
            "features": len(features),
            "train_parcels": int(train_mask.sum()),
        },
        metrics=measured,
        tables={"extrapolation_by_rule_share": extrapolation},
        tags={
            "holdout_from": f"{start:%Y-%m-%d}",
            "node_features": str(node_features(settings) is not None),
        },
        example=frame[features].head(5),
    )
    report(Progress("train routing", f"registered {NAME} v{version}", 3, 3))
    return {
        "name": NAME,
        "version": version,
        "run_id": run_id,
        "train_parcels": int(train_mask.sum()),
        "held_out_parcels": int(len(held)),
        "holdout_from": f"{start:%Y-%m-%d}",
        "metrics": measured,
        "extrapolation": extrapolation.to_dict(orient="records"),
        "rounds": stored.settings["rounds"],
        "seconds": seconds_since(t0),
    }


# Columns of the history's rows that are not model inputs: the wait for a wave is a schedule,
# added to the predicted days, not learned.
NOT_FEATURES = ("wait_hours",)


def router_for(rc):
    from cadence.models._route_plan import Objective, Router, Search

    return lambda net: Router(
        net,
        Objective(**rc.objective.model_dump()),
        Search(
            nodes_per_order=rc.candidates.nodes_per_order,
            waves=rc.candidates.waves,
            time_limit_seconds=rc.optimiser.time_limit_seconds,
            mip_rel_gap=rc.optimiser.mip_rel_gap,
            unserved_cost=rc.optimiser.unserved_cost,
            max_mip_candidates=rc.optimiser.max_mip_candidates,
        ),
    )


def resolve_model(settings: Settings, uri: str | None) -> tuple[str, Any]:
    """The routing model to use: `uri`, else the champion, else the challenger."""
    from cadence.flows.steps.models import has_models
    from cadence.models._registry import CHALLENGER, CHAMPION, alias_version
    from cadence.models._route_registry import NAME, load

    if uri is None:
        if not has_models(settings):
            raise RoutingDataError("no routing model yet: run `cadence train routing` first")
        _configure(settings)
        for alias in (CHAMPION, CHALLENGER):
            if alias_version(NAME, alias) is not None:
                uri = f"models:/{NAME}@{alias}"
                break
        else:
            raise RoutingDataError("no routing model yet: run `cadence train routing` first")
    else:
        _configure(settings)
    return uri, load(uri)


def replay_days(
    settings: Settings,
    conf,
    stored,
    days: int,
    strategies: tuple[str, ...],
    *,
    net: Network | None = None,
    report: Report = silent,
):
    """The last `days` held-out days through `strategies`; per-strategy outcomes and notes.
    `net`: the network when the caller has read it already."""
    from cadence.models._route_eval import day_batch, replay, stock_reader

    rc = conf.routing
    check_days(days, rc.holdout_days)
    net = net or network(settings, rc)
    truth = truth_for(settings, net)
    weather = storms(settings.raw_dir)
    estimate = estimate_for(settings, rc, net, stored, weather)
    router = router_for(rc)(net)
    orders = pd.read_parquet(settings.raw_dir / "orders.parquet")
    stock_of = stock_reader(settings.raw_dir, net)
    first = holdout_start(settings, days)
    dates = [first + pd.Timedelta(days=i) for i in range(days)]
    done = iter(range(1, days + 1))

    def on_day(day: pd.Timestamp) -> None:
        report(Progress("route", f"{day:%Y-%m-%d} replayed", next(done), days))

    batches: list = []

    def batch_of(d: pd.Timestamp):
        batches.append(day_batch(settings.raw_dir, net, d, orders, stock_of))
        return batches[-1]

    parcels: dict[str, list] = {"optimal": []}
    outcomes, notes = replay(
        dates, batch_of, router, estimate, truth, strategies, on_day, parcels=parcels
    )
    return outcomes, notes, dates, Replayed(net, router, truth, weather, batches, estimate, parcels)


@dataclass
class Replayed:
    """What a replay was made with, for the reports beside it."""

    net: Network
    router: Any
    truth: Any
    weather: pd.DataFrame
    batches: list
    estimate: Any
    # The optimal plans' parcels with their true arrival, for the windows' calibration.
    parcels: dict[str, list]


def estimate_for(settings: Settings, rc, net: Network, stored, weather: pd.DataFrame):
    """What the learned models expect of any parcel, weighed as conf/routing.yaml says."""
    from cadence.models._route_plan import model_estimate

    return model_estimate(
        stored,
        net,
        weather,
        node_features(settings),
        net.damage_refund_share,
        rc.objective.damage_weight,
    )


def check_days(days: int, holdout_days: int) -> None:
    if not 1 <= days <= holdout_days:
        raise RoutingDataError(
            f"--days {days}: the replay covers held-out days only, 1 to {holdout_days} "
            "(conf/routing.yaml holdout_days)"
        )


def order_attributes(settings: Settings, order_ids: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Per order: the shopper's attributes and the destination's region and city tier."""
    from cadence.models._route_inputs import addresses_at

    orders = pd.read_parquet(
        settings.raw_dir / "orders.parquet", columns=["order_id", "user_id", "ordered_at"]
    )
    orders = orders[orders.order_id.isin(order_ids)].reset_index(drop=True)
    users = pd.read_parquet(settings.raw_dir / "users.parquet")
    addr = addresses_at(settings.raw_dir, orders.user_id, orders.ordered_at)
    out = orders[["order_id", "user_id"]].merge(
        users[
            ["user_id", *[c for c in columns if c in users and c not in ("region", "city_tier")]]
        ],
        on="user_id",
        how="left",
    )
    out["region"] = addr.region.to_numpy()
    out["city_tier"] = addr.city_tier.astype("Int64").to_numpy()
    return out.drop(columns="user_id")


def evaluate(
    settings: Settings, conf, days: int, model: str | None, *, report: Report = silent
) -> dict[str, Any]:
    """The strategy table over the last `days` held-out days, the A/B read-out, the models'
    error against the truth by how often the rule chose the node, and the routing audit."""
    from cadence.audits._routing import routing_groups, worst_next_day_drop
    from cadence.models._route_eta import calibration
    from cadence.models._route_eval import ab_readout, extrapolation, summary
    from cadence.models._route_models import rule_share
    from cadence.models._route_plan import STRATEGIES

    t0 = time.perf_counter()
    net = network(settings, conf.routing)  # the data first: an order log alone cannot be routed
    uri, stored = resolve_model(settings, model)
    outcomes, notes, dates, used = replay_days(
        settings, conf, stored, days, STRATEGIES, net=net, report=report
    )
    table = summary(outcomes, notes)
    _, targets, train_mask, _ = training_data(settings, used.net, conf.routing.holdout_days)
    reach = extrapolation(
        used.router,
        used.batches,
        stored,
        used.net,
        used.weather,
        node_features(settings),
        used.truth,
        rule_share(targets[train_mask]),
    )
    columns = ["region", "city_tier", *conf.audits.sensitive]
    ids = outcomes["nearest"].order_id.to_numpy()
    groups = routing_groups(outcomes, order_attributes(settings, ids, columns), columns)
    drop, worst = worst_next_day_drop(groups, "nearest", "optimal")
    unassigned = notes["optimal"]["unassigned"]
    kept = used.parcels["optimal"]
    eta = calibration(used.estimate, pd.concat(kept, ignore_index=True) if kept else pd.DataFrame())
    out = {
        "model": uri,
        "days": [f"{dates[0]:%Y-%m-%d}", f"{dates[-1]:%Y-%m-%d}"],
        "strategies": table,
        "ab": ab_readout(outcomes),
        "audit": {
            "groups": groups.to_dict(orient="records"),
            "max_next_day_drop": round(drop, 4),
            "worst_group": worst,
        },
        "extrapolation": reach.to_dict(orient="records"),
        "eta": eta,
        "unassigned": [{"order_id": k, "reason": v} for k, v in sorted(unassigned.items())],
        "seconds": seconds_since(t0),
    }
    out["saved"] = str(_save_evaluation(settings, out))
    return out


def _save_evaluation(settings: Settings, out: dict[str, Any]) -> Path:
    """The read-out in `reports/routing/`, for reviewers and the audit (whole file or none)."""
    import json

    folder = settings.home / "reports" / "routing"
    folder.mkdir(parents=True, exist_ok=True)
    first, last = out["days"]
    path = folder / f"evaluate-{first}-to-{last}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(out, indent=1, default=str))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def latest_evaluation(settings: Settings) -> dict[str, Any] | None:
    """The most recently written `route evaluate` read-out, or None."""
    import json

    folder = settings.home / "reports" / "routing"
    saved = sorted(folder.glob("evaluate-*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(saved[-1].read_text()) if saved else None


def promote(
    settings: Settings, conf, note: str | None, *, report: Report = silent
) -> tuple[bool, list, str]:
    """Runs the routing gates on the challenger: both it and the champion route the held-out
    days with `optimal`; the audit compares the challenger with `nearest` per group."""
    from cadence.audits._routing import routing_groups, worst_next_day_drop
    from cadence.models._gates import Candidate, check_gates, run_gates
    from cadence.models._registry import CHALLENGER, CHAMPION, alias_version
    from cadence.models._registry import promote as set_champion
    from cadence.models._route_eval import summary
    from cadence.models._route_registry import NAME, load

    rc = conf.routing
    check_gates(rc.promotion.gates)
    from cadence.flows.steps.models import has_models

    if not has_models(settings):
        raise RoutingDataError("no routing model yet: run `cadence train routing` first")
    _configure(settings)
    version = alias_version(NAME, CHALLENGER)
    if version is None:
        raise RoutingDataError("routing has no challenger: run `cadence train routing` first")
    days = rc.holdout_days
    challenger = load(f"models:/{NAME}@{CHALLENGER}")
    net = network(settings, rc)
    out, notes, dates, _ = replay_days(
        settings, conf, challenger, days, ("nearest", "optimal"), net=net, report=report
    )
    mine = summary(out, notes)["optimal"]
    champion_version = alias_version(NAME, CHAMPION)
    theirs = None
    if champion_version is not None:
        c_out, c_notes, _, _ = replay_days(
            settings,
            conf,
            load(f"models:/{NAME}@{CHAMPION}"),
            days,
            ("optimal",),
            net=net,
            report=report,
        )
        theirs = summary(c_out, c_notes)["optimal"]
    columns = ["region", "city_tier", *conf.audits.sensitive]
    ids = out["nearest"].order_id.to_numpy()
    groups = routing_groups(out, order_attributes(settings, ids, columns), columns)
    drop, worst = worst_next_day_drop(groups, "nearest", "optimal")
    metrics = {
        "cost_per_order": mine["cost_per_order"],
        "capacity_violations": mine["capacity_violations"],
        "stock_violations": mine["stock_violations"],
        "max_next_day_drop": drop,
    }
    cand = Candidate(
        name=NAME,
        version=version,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=None if theirs is None else {"cost_per_order": theirs["cost_per_order"]},
        test_window=f"{dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}",
        conf=rc.promotion.model_dump(),
        audit={"worst_group": worst},
    )
    results = run_gates(cand, rc.promotion.gates)
    return set_champion(cand, results, note), results, version


def rollback(settings: Settings, reason: str) -> tuple[str, str]:
    from cadence.flows.steps.models import has_models
    from cadence.models._registry import rollback as roll
    from cadence.models._route_registry import NAME

    if not has_models(settings):
        raise RoutingDataError("no routing model yet: run `cadence train routing` first")
    _configure(settings)
    return roll(NAME, reason)


def not_ready(settings: Settings, conf) -> str | None:
    """Why routing cannot run on this workspace (no nodes or parcels, too few of them, no
    world to judge a replay), or None."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        network(settings, conf.routing)
        truth_for_check(settings)
        cut = holdout_start(settings, conf.routing.holdout_days)
    except RoutingDataError as exc:
        return str(exc)
    orders = pq.read_table(settings.raw_dir / "orders.parquet", columns=["order_id", "ordered_at"])
    early = orders.filter(pc.less(orders["ordered_at"], pa_scalar(cut)))["order_id"]
    ships = pq.read_table(settings.raw_dir / "shipments.parquet", columns=["order_id"])
    n = int(pc.sum(pc.is_in(ships["order_id"], early)).as_py() or 0)
    least = conf.routing.models.min_parcels
    if n < least:
        return (
            f"only {n} parcels before the held-out {conf.routing.holdout_days} days; routing "
            f"needs at least {least:,} to learn from (conf/routing.yaml models.min_parcels)"
        )
    return None


def truth_for_check(settings: Settings) -> None:
    from cadence.ingest._manifest import read_manifest

    manifest = read_manifest(settings.raw_dir)
    if manifest is None or manifest.source != "world":
        raise RoutingDataError(
            "routing is judged against the simulated world's true costs and times; this "
            "workspace holds an imported order log, which has no such truth"
        )


def pa_scalar(t: pd.Timestamp):
    import pyarrow as pa

    return pa.scalar(t.to_pydatetime(), pa.timestamp("us", tz="UTC"))


def plan_day(
    settings: Settings, conf, date: dt.date, model: str | None, *, report: Report = silent
) -> dict[str, Any]:
    """The day's assignment by the `optimal` strategy with the champion (else the challenger):
    per parcel the node, carrier, wave, predicted cost and days, and the reason in words; each
    order no node can serve listed with its reason. Written to `routing/plan-DATE.parquet` and
    `.csv` in the workspace (whole files or nothing)."""
    from cadence.models._route_eval import day_batch, stock_reader

    rc = conf.routing
    net = network(settings, rc)
    uri, stored = resolve_model(settings, model)
    orders = pd.read_parquet(settings.raw_dir / "orders.parquet")
    day = pd.Timestamp(date).tz_localize("UTC")
    batch = day_batch(settings.raw_dir, net, day, orders, stock_reader(settings.raw_dir, net))
    if batch.orders.empty:
        raise RoutingDataError(f"--date {date}: no shipped orders on that day in the data")
    weather = storms(settings.raw_dir)
    estimate = estimate_for(settings, rc, net, stored, weather)
    router = router_for(rc)(net)
    report(Progress("route plan", f"planning {len(batch.orders):,} orders"))
    plan = router.plan("optimal", batch, estimate)
    frame = _plan_frame(net, batch, plan)
    out_dir = settings.home / "routing"
    written = _write_plan(out_dir, date, frame)
    return {
        "date": f"{date:%Y-%m-%d}",
        "model": uri,
        "orders": int(len(batch.orders)),
        "parcels": int((frame.node_id != "").sum()),
        "unassigned": [
            {"order_id": int(batch.orders.order_id.iloc[r]), "reason": why}
            for r, why in sorted(plan.unassigned.items())
        ],
        "predicted_cost": round(float(frame.predicted_cost.sum()), 2),
        "solver": plan.method,
        "gap": plan.gap,
        "stock_violations": plan.stock_violations,
        "capacity_violations": plan.capacity_violations,
        "files": [str(p) for p in written],
    }


ZONE_WORDS = ("same city", "same province", "another region", "a remote province")


def _plan_frame(net: Network, batch, plan) -> pd.DataFrame:
    """One row per parcel (and per unassigned order), the reason in words."""
    from cadence.models._route_inputs import CARRIERS, haversine

    o = batch.orders
    c = plan.chosen if plan.chosen is not None else pd.DataFrame()
    rows = []
    cands = plan.candidates
    for _, p in c.iterrows():
        r = int(p.order_row)
        node = int(p.node)
        zone = int(net.zone(np.array([node]), [o.dest_city.iloc[r]], [o.dest_province.iloc[r]])[0])
        km = float(haversine(o.dest_lat.iloc[r], o.dest_lon.iloc[r], net.lat[node], net.lon[node]))
        wave = pd.Timestamp(int(p.wave_us), unit="us", tz="UTC")
        latest = pd.Timestamp(int(p.est_latest_us), unit="us", tz="UTC")
        promise = pd.Timestamp(int(o.promise_us.iloc[r]), unit="us", tz="UTC")
        mine = cands[cands.order_row == r]
        nearest = None
        if len(mine):
            d = haversine(
                o.dest_lat.iloc[r],
                o.dest_lon.iloc[r],
                net.lat[mine.node.to_numpy()],
                net.lon[mine.node.to_numpy()],
            )
            nearest = mine.iloc[int(np.argmin(d))]
        reason = (
            f"{net.node_id[node]} ({ZONE_WORDS[zone]}, {km:.0f} km) by {CARRIERS[int(p.carrier)]}, "
            f"wave {wave:%d %b %H:%M}: predicted {p.est_cost:.2f}, arriving by "
            f"{latest:%d %b %H:%M} (upper quantile), promised by {promise:%d %b %H:%M}"
        )
        if nearest is not None and int(nearest.node) != node:
            reason += (
                f"; the nearest node holding it, {net.node_id[int(nearest.node)]}, would cost "
                f"{nearest.est_cost:.2f}"
            )
        rows.append(
            {
                "order_id": int(o.order_id.iloc[r]),
                "parcel": int(p.part),
                "node_id": str(net.node_id[node]),
                "carrier": CARRIERS[int(p.carrier)],
                "wave_at": wave,
                "predicted_cost": float(p.est_cost),
                "predicted_days": float(p.est_days),
                "arrives_by": latest,
                "promised_by": promise,
                "reason": reason,
            }
        )
    for r, why in sorted(plan.unassigned.items()):
        rows.append(
            {
                "order_id": int(o.order_id.iloc[r]),
                "parcel": 0,
                "node_id": "",
                "carrier": "",
                "wave_at": pd.NaT,
                "predicted_cost": 0.0,
                "predicted_days": float("nan"),
                "arrives_by": pd.NaT,
                "promised_by": pd.Timestamp(int(o.promise_us.iloc[r]), unit="us", tz="UTC"),
                "reason": f"unassigned: {why}",
            }
        )
    return pd.DataFrame(rows).sort_values(["order_id", "parcel"]).reset_index(drop=True)


def _write_plan(folder: Path, date: dt.date, frame: pd.DataFrame) -> list[Path]:
    """Both files written beside their final names and renamed, so a failure leaves neither
    half-written."""
    folder.mkdir(parents=True, exist_ok=True)
    final = [folder / f"plan-{date:%Y-%m-%d}.parquet", folder / f"plan-{date:%Y-%m-%d}.csv"]
    tmp = [p.with_name(f".{p.name}.tmp") for p in final]
    try:
        frame.to_parquet(tmp[0], index=False)
        frame.to_csv(tmp[1], index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        for t, f in zip(tmp, final, strict=True):
            t.replace(f)
    finally:
        for t in tmp:
            t.unlink(missing_ok=True)
    return final


def prepositioning(
    settings: Settings, conf, days: int, model: str | None, *, report: Report = silent
) -> dict[str, Any]:
    """The 72-hour regional forecast's error on the held-out days (beside the naive one), and
    the transfers it proposes replayed: `optimal` with and without them, their cost counted."""
    from cadence.models._route_eval import day_batch, replay_prepositioned, stock_reader
    from cadence.models._route_forecast import (
        ForecastConf,
        TransferConf,
        daily_demand,
        errors,
        forecast,
        transfers,
    )
    from cadence.models._route_inputs import order_context, order_lines

    t0 = time.perf_counter()
    rc = conf.routing
    check_days(days, rc.holdout_days)
    net = network(settings, rc)
    truth = truth_for(settings, net)
    uri, stored = resolve_model(settings, model)
    pc = rc.prepositioning
    fconf = ForecastConf(pc.horizon_days, pc.window_days, pc.season_days)
    tconf = TransferConf(pc.cover, pc.cost_per_kg, pc.cost_per_unit, pc.saving_per_unit)
    raw = settings.raw_dir
    orders = pd.read_parquet(raw / "orders.parquet")
    shipped = orders[orders.channel.fillna("") != "store"].reset_index(drop=True)
    ctx = order_context(raw, shipped)
    demand = daily_demand(
        shipped.assign(region=ctx.dest_region_name.to_numpy()),
        order_lines(raw)[["order_id", "sku", "quantity"]],
    )
    first = holdout_start(settings, days)
    dates = [first + pd.Timedelta(days=i) for i in range(days)]
    origins = [d.date() for d in dates[:: fconf.horizon_days]]
    report(Progress("forecast", f"forecast errors over {len(origins)} origins"))
    errs = errors(demand, origins, fconf)
    products = pd.read_parquet(raw / "products.parquet", columns=["sku", "weight_kg"])
    sku_index = {s: i for i, s in enumerate(products.sku)}
    weight = products.weight_kg.to_numpy()

    def propose(day: pd.Timestamp, stock: np.ndarray) -> pd.DataFrame:
        return transfers(net, stock, forecast(demand, day.date(), fconf), sku_index, weight, tconf)

    estimate = estimate_for(settings, rc, net, stored, storms(raw))
    stock_of = stock_reader(raw, net)
    report(Progress("forecast", f"replaying {days} days with and without transfers"))
    replayed = replay_prepositioned(
        dates,
        lambda d: day_batch(raw, net, d, orders, stock_of),
        router_for(rc)(net),
        estimate,
        truth,
        propose,
        fconf.horizon_days,
    )
    return {
        "model": uri,
        "days": [f"{dates[0]:%Y-%m-%d}", f"{dates[-1]:%Y-%m-%d}"],
        "forecast": {"horizon_days": fconf.horizon_days, **errs},
        "prepositioning": replayed,
        "seconds": seconds_since(t0),
    }


def service_shop(settings: Settings, conf):
    """What the service routes single orders with: the network, the champion's models (else
    the challenger's), the catalogue, the cities shoppers live in, and the arrival windows'
    calibration from the latest `route evaluate`. `RoutingMissing` says what is absent."""
    from cadence.models._registry import CHALLENGER, CHAMPION, alias_version
    from cadence.models._route_registry import NAME
    from cadence.serving._routing import RoutingMissing, Shop

    rc = conf.routing
    try:
        net = network(settings, rc)
        uri, stored = resolve_model(settings, None)
    except RoutingDataError as exc:
        raise RoutingMissing(f"routing: {exc}") from exc
    alias = uri.rsplit("@", 1)[-1]
    version = alias_version(NAME, CHAMPION if alias == CHAMPION else CHALLENGER)
    weather = storms(settings.raw_dir)
    products, cities = catalogue(settings.raw_dir)
    saved = latest_evaluation(settings)
    return Shop(
        net=net,
        router=router_for(rc)(net),
        estimate=estimate_for(settings, rc, net, stored, weather),
        model_version=f"{NAME} v{version}" if version else uri,
        products=products,
        cities=cities,
        calibration=(saved or {}).get("eta"),
    )


def catalogue(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The products by SKU (unit price, weight, volume, fragility) and the cities shoppers live
    in (province, region, tier, and their addresses' mean position)."""
    products = pd.read_parquet(
        raw / "products.parquet", columns=["sku", "price", "weight_kg", "volume_cm3", "fragile"]
    ).rename(columns={"price": "unit_price"})
    users = pd.read_parquet(
        raw / "users.parquet", columns=["city", "province", "region", "city_tier", "lat", "lon"]
    )
    cities = users.groupby("city").agg(
        province=("province", "first"),
        region=("region", "first"),
        tier=("city_tier", "first"),
        lat=("lat", "mean"),
        lon=("lon", "mean"),
    )
    products["sku"] = products.sku.astype(str)
    return products.set_index("sku"), cities


def load_stock(settings: Settings, date: dt.date | None) -> dict[str, Any]:
    """The service's stock view set from the data's inventory snapshot of `date` (else the
    latest): every node's on-hand units per SKU, as `PUT /v1/stock` would set them."""
    from cadence.flows.steps.serving import database
    from cadence.serving._db import sessions
    from cadence.serving._records import Context
    from cadence.serving._routing import set_stock

    path = settings.raw_dir / "inventory.parquet"
    if not path.exists():
        raise RoutingDataError(f"{path}: no inventory table in the data; nothing to load")
    inv = pd.read_parquet(path, columns=["date", "node_id", "sku", "on_hand"])
    days = pd.to_datetime(inv.date).dt.date
    day = days.max() if date is None else date
    if date is not None and not (days == date).any():
        raise RoutingDataError(
            f"--date {date}: no inventory snapshot that day (the data has {days.min()} to "
            f"{days.max()})"
        )
    snap = inv[days == day]
    items = list(
        zip(
            snap.node_id.astype(str),
            snap.sku.astype(str),
            snap.on_hand.astype(int).tolist(),
            strict=True,
        )
    )
    engine = database(settings)
    try:
        with sessions(engine)() as session:
            now = dt.datetime.now(dt.UTC)
            ctx = Context(session, "cli", now, settings.decisions().serving, None)
            out = set_stock(ctx, items)
    finally:
        engine.dispose()
    return {"date": f"{day}", **out}
