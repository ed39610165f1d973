"""Merge step: a campaign run on the simulated world through its policy hook, read out.

The world of the workspace is run again from its settings (same seed, same bytes) up to the
campaign's first day, a feature snapshot at least `days` before the world's end; the champion
scores the shoppers on that snapshot's features. From then on, each day, the campaign offers
to the treatment group's eligible shoppers and the world's own `respond` decides who accepts,
orders early, cancels or exits; every day is consolidated. Nothing is written to the
workspace: the campaign's world is a counterfactual of its own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from cadence.flows.conf import Conf
from cadence.flows.settings import Settings
from cadence.flows.steps._progress import Progress, Report, silent

KEPT = ("users", "orders", "order_items", "shipments", "offers", "address_changes")
STATIC = ("products", "nodes", "dispatch_waves")


def campaign_start(settings: Settings, days: int) -> tuple[pd.Timestamp, Any]:
    """The campaign's first day (the latest feature snapshot `days` or more before the world's
    end) and the raw manifest; ValueError when the data is not a simulated world."""
    from cadence.features._manifest import read_manifest as read_features
    from cadence.ingest._manifest import read_manifest

    raw = read_manifest(settings.raw_dir)
    if raw is None:
        raise ValueError(f"no data in {settings.raw_dir}: run the pipeline first")
    if raw.source != "world":
        raise ValueError(
            "merge simulate runs a campaign on the simulated world; this workspace holds an "
            "imported order log, which cannot answer offers"
        )
    if days < 1:
        raise ValueError(f"--days {days}: a campaign lasts 1 day or more")
    snaps = read_features(settings.features_dir).snapshots
    fits = [s for s in snaps if pd.Timestamp(s) + pd.Timedelta(days=days) <= pd.Timestamp(raw.end)]
    if not fits:
        raise ValueError(
            f"--days {days}: no feature snapshot lies {days} days or more before the data's end "
            f"({raw.end:%Y-%m-%d})"
        )
    return pd.Timestamp(max(fits)), raw


def campaign_scores(settings: Settings, conf: Conf, snap: pd.Timestamp):
    """The champion's scores on the snapshot's features (the list marketing would use), and
    each shopper's orders per category in the year before it."""
    from cadence.flows.steps import _read
    from cadence.flows.steps.models import context
    from cadence.models._registry import CHAMPION, alias_version, load
    from cadence.models._score import eligible, score_frame

    ctx = context(settings, conf)
    if alias_version(ctx.name, CHAMPION) is None:
        raise ValueError(f"{ctx.name} has no champion: run the pipeline first")
    trained = load(f"models:/{ctx.name}@{CHAMPION}")
    scoring = ctx.conf.scoring
    frame, _ = eligible(
        _read.feature_rows(settings.features_dir, [snap]),
        active_days=scoring.active_days,
        withdrawn=_read.withdrawn(settings.raw_dir, snap),
    )
    scored = score_frame(
        trained,
        frame,
        snapshot=snap,
        lead_days=scoring.lead_days,
        medium=scoring.bands.medium,
        high=scoring.bands.high,
        model_version=ctx.name,
        contact_bands=scoring.contact_bands,
        exact_drivers=False,
    )
    probability = next(c for c in scored.columns if c.startswith("p_order_"))
    scores = pd.DataFrame(
        {
            "user_id": scored.user_id,
            "probability": scored[probability],
            "expected_next_order": scored.expected_next_order_date,
        }
    )
    counts = [c for c in frame.columns if c.endswith("_orders_365d") and c != "orders_365d"]
    usual = None
    if counts:
        long = frame[["user_id", *counts]].melt("user_id", var_name="category", value_name="n")
        long["category"] = long.category.str.removesuffix("_orders_365d")
        usual = dict(zip(zip(long.user_id, long.category, strict=True), long.n, strict=True))
    return scores, usual


def simulate(
    settings: Settings,
    conf: Conf,
    days: int,
    *,
    seed: int = 0,
    resamples: int = 1000,
    report: Report = silent,
) -> dict[str, Any]:
    from cadence.flows.steps.world import world_config
    from cadence.serving._campaign import CampaignPolicy
    from cadence.serving._plan import Logistics
    from cadence.serving._readout import read_out
    from cadence.world import World

    snap, raw = campaign_start(settings, days)
    report(Progress("merge", f"scoring shoppers as of {snap:%Y-%m-%d}"))
    scores, usual = campaign_scores(settings, conf, snap)
    cfg = world_config(
        conf.world,
        users=raw.users,
        days=raw.days,
        seed=raw.seed,
        start=raw.start.date() if raw.start else None,
    )
    start_day = (snap.date() - cfg.start).days
    world = World(cfg)
    parts: dict[str, list] = {}

    def keep(name: str, table) -> None:
        if name in KEPT or name in STATIC:
            parts.setdefault(name, []).append(table)

    def on_day(day: int) -> None:
        report(Progress("merge", "running the world", day + 1, cfg.days))

    for name, table in world.run(until=start_day, on_day=on_day):
        keep(name, table)
    history = _frames(parts)
    logistics = Logistics.from_raw(history)
    policy = CampaignPolicy(
        scores=scores,
        rules=conf.serving.offers,
        start=snap.date(),
        days=days,
        seed=seed,
        until=cfg.start + dt.timedelta(days=cfg.days),
    )
    world.policy = policy
    # On to the world's end (the policy sends nothing after the campaign): an offer's order
    # may come after the last day it was sent, and the world's offers table comes at its end.
    for name, table in world.run(on_day=on_day):
        keep(name, table)
    tables = _frames(parts)
    report(Progress("merge", "consolidating each day"))
    out = read_out(policy, tables, logistics, conf.serving, usual, resamples=resamples, seed=seed)
    out["window"]["list_as_of"] = snap.isoformat()
    b, m = out["baseline"], out["merged"]
    out["change"] = {
        k: (m[k] - b[k]) / b[k] if b[k] else None
        for k in ("parcels", "batches_per_node_day", "cost_per_order", "co2_per_order")
    }
    return out


def _frames(parts: dict[str, list]) -> dict[str, pd.DataFrame]:
    import pyarrow as pa

    return {
        name: pa.concat_tables(tables).to_pandas() if tables else None
        for name, tables in parts.items()
    }
