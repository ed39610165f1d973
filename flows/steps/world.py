"""World step: the simulated shop written into the workspace (`raw/` and `truth/`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from cadence.flows.conf import WorldConf
from cadence.flows.steps._progress import Progress, Report, silent
from cadence.flows.steps._read import MissingInput
from cadence.ingest import (
    RawManifest,
    check_replaceable,
    staged_dir,
    write_manifest,
)
from cadence.world import ResponseParams, WorldConfig, realism_table, simulate, summarise


def world_config(conf: WorldConf, **overrides) -> WorldConfig:
    """The simulator's settings: conf/world.yaml, with any override that is not None.
    ValueError names a bad value."""
    base = {
        "users": conf.users,
        "days": conf.days,
        "seed": conf.seed,
        "start": conf.start,
        "truth_every_days": conf.truth.every_days,
        "horizons_days": conf.truth.horizons_days,
        "offers": ResponseParams(**conf.offers.model_dump()),
    }
    if isinstance(overrides.get("start"), str):
        overrides["start"] = dt.date.fromisoformat(overrides["start"])
    if (overrides.get("seed") or 0) < 0:
        raise ValueError(f"seed must be 0 or more, got {overrides['seed']}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return WorldConfig(**base)


def generate(
    cfg: WorldConfig, out: Path, truth: Path, *, force: bool = False, report: Report = silent
) -> RawManifest:
    """Runs the simulation and streams it to Parquet: raw tables to `out`, truth to `truth`.

    Both folders are built aside and swapped in only when the whole world is written, so a
    failed or interrupted run leaves any previous world as it was. A folder holding files
    Cadence did not write is refused (`NotOurs`) unless `force`.
    """
    check_replaceable(out, force=force)
    check_replaceable(truth, force=force)
    counts: dict[str, int] = {}
    days = 0

    def on_day(_: object) -> None:
        nonlocal days
        days += 1
        report(Progress("simulate", "simulating days", days, cfg.days))

    with staged_dir(out) as raw_tmp, staged_dir(truth) as truth_tmp:
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            for name, batch in simulate(cfg, on_day=on_day):
                if name not in writers:
                    folder = truth_tmp if name.startswith("truth_") else raw_tmp
                    path = folder / f"{name.removeprefix('truth_')}.parquet"
                    writers[name] = pq.ParquetWriter(path, batch.schema, compression="zstd")
                writers[name].write_table(batch)
                counts[name] = counts.get(name, 0) + batch.num_rows
        finally:
            for w in writers.values():
                w.close()
        manifest = RawManifest(
            source="world",
            seed=cfg.seed,
            users=cfg.users,
            days=cfg.days,
            start=dt.datetime.fromtimestamp(cfg.start_us / 1e6, tz=dt.UTC),
            end=dt.datetime.fromtimestamp(cfg.end_us / 1e6, tz=dt.UTC),
            truth_every_days=cfg.truth_every_days,
            horizons_days=list(cfg.horizons_days),
            generator=generator(),
            tables={k: v for k, v in sorted(counts.items()) if not k.startswith("truth_")},
        )
        write_manifest(raw_tmp, manifest)
        truth_counts = {
            k.removeprefix("truth_"): v for k, v in counts.items() if k.startswith("truth_")
        }
        write_manifest(
            truth_tmp, manifest.model_copy(update={"tables": dict(sorted(truth_counts.items()))})
        )
    return manifest


def generator() -> str:
    """A key of the simulator's code and the raw tables' contracts: a world written by other
    code (an older Cadence) is generated again, never reused."""
    from cadence import world
    from cadence.flows import _fingerprint
    from cadence.ingest import _tables

    return _fingerprint.of(
        _fingerprint.files(Path(world.__file__).parent, "*.py"),
        _fingerprint.files(Path(_tables.__file__).parent, Path(_tables.__file__).name),
    )


def unchanged(raw: Path, truth: Path, cfg: WorldConfig) -> bool:
    """True when `raw` and `truth` already hold this world, whole: a world is a function of
    its settings and the simulator's code (same seed, same bytes), so it need not be generated
    again."""
    from cadence.ingest import read_manifest

    try:
        manifest, truth_manifest = read_manifest(raw), read_manifest(truth)
    except ValueError:
        return False
    if manifest is None or truth_manifest is None or manifest.source != "world":
        return False
    same = (
        manifest.seed == cfg.seed
        and manifest.users == cfg.users
        and manifest.days == cfg.days
        and manifest.start is not None
        and manifest.start.date() == cfg.start
        and manifest.truth_every_days == cfg.truth_every_days
        and tuple(manifest.horizons_days or ()) == tuple(cfg.horizons_days)
        and manifest.generator == generator()
    )
    files = [raw / f"{t}.parquet" for t in manifest.tables]
    files += [truth / f"{t}.parquet" for t in truth_manifest.tables]
    return same and all(f.exists() for f in files)


def summary(raw: Path, manifest: RawManifest) -> dict[str, object]:
    """The world's headline figures (one-order customers, orders per buyer, late parcels...)."""
    columns = {
        "orders": ["user_id", "amount"],
        "shipments": ["late", "damaged", "cost", "node_id", "wave_at"],
        "users": ["user_id"],
        "nodes": ["node_id", "kind"],
    }
    tables = {
        t: pq.read_table(raw / f"{t}.parquet", columns=c)
        for t, c in columns.items()
        if (raw / f"{t}.parquet").exists()
    }
    return summarise(tables, manifest.tables)


def realism(raw: Path, truth: Path, manifest: RawManifest) -> list[dict]:
    """The world's realism table (`world.realism_table`): its behaviour measured beside the
    targets and real logs' figures. Tables the folders lack leave their rows unmeasured."""
    columns = {
        "orders": ["order_id", "user_id", "ordered_at"],
        "order_items": ["order_id", "sku", "quantity"],
        "products": ["sku", "category"],
        "shipments": ["late"],
        "users": ["user_id", "signup_at"],
    }
    tables = {
        t: pq.read_table(raw / f"{t}.parquet", columns=c).to_pandas()
        for t, c in columns.items()
        if (raw / f"{t}.parquet").exists()
    }
    if "orders" not in tables:
        raise MissingInput(f"no orders in {raw}; generate a world first")
    oracle = truth / "oracle.parquet"
    wanted = ["user_id", "snapshot_at", "p_30d"]
    return realism_table(
        tables["orders"],
        end=pd.Timestamp(manifest.end),
        start=pd.Timestamp(manifest.start) if manifest.start is not None else None,
        users=tables.get("users"),
        items=tables.get("order_items"),
        products=tables.get("products"),
        shipments=tables.get("shipments"),
        oracle=(
            pq.read_table(oracle, columns=wanted).to_pandas()
            if oracle.exists() and set(wanted) <= set(pq.read_schema(oracle).names)
            else None
        ),
    )
