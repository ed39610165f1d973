"""`cadence world ...`: generate the simulated shop into the workspace; the demo's first stage."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import pyarrow.parquet as pq
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.settings import Settings
from ingest import staged_dir, validate_dir
from world import WorldConfig, simulate, summarise

world_app = typer.Typer(help="The simulated shop: the embedded default data.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

_CONF_KEYS = {"users", "days", "seed", "start", "truth"}


def load_world_conf(path: Path) -> dict[str, Any]:
    """Reads conf/world.yaml, refusing keys it does not know (a typo must not pass silently)."""
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - _CONF_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(_CONF_KEYS)}")
    truth = data.get("truth") or {}
    return {
        "users": int(data.get("users", 20_000)),
        "days": int(data.get("days", 365)),
        "seed": int(data.get("seed", 7)),
        "start": dt.date.fromisoformat(str(data.get("start", "2025-01-01"))),
        "truth_every_days": int(truth.get("every_days", 7)),
        "horizons_days": tuple(int(h) for h in truth.get("horizons_days", (7, 30))),
    }


def write_world(cfg: WorldConfig, out: Path, truth: Path, console: Console | None = None) -> dict:
    """Runs the simulation and streams it to Parquet: raw tables to `out`, truth to `truth`.

    Both folders are built aside and swapped in only when the whole world is written, so a
    failed or interrupted run leaves any previous world as it was.
    """
    counts: dict[str, int] = {}
    with staged_dir(out) as raw_tmp, staged_dir(truth) as truth_tmp:
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            with _progress(console) as progress:
                task = progress.add_task("simulating days", total=cfg.days)
                for name, batch in simulate(cfg, on_day=lambda _: progress.advance(task)):
                    if name not in writers:
                        folder = truth_tmp if name.startswith("truth_") else raw_tmp
                        path = folder / f"{name.removeprefix('truth_')}.parquet"
                        writers[name] = pq.ParquetWriter(path, batch.schema, compression="zstd")
                    writers[name].write_table(batch)
                    counts[name] = counts.get(name, 0) + batch.num_rows
        finally:
            for w in writers.values():
                w.close()
        manifest = {
            "source": "world",
            "seed": cfg.seed,
            "users": cfg.users,
            "days": cfg.days,
            "start": _iso(cfg.start_us),
            "end": _iso(cfg.end_us),
            "truth_every_days": cfg.truth_every_days,
            "horizons_days": list(cfg.horizons_days),
            "tables": {k: v for k, v in sorted(counts.items()) if not k.startswith("truth_")},
        }
        (raw_tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        truth_counts = {
            k.removeprefix("truth_"): v for k, v in counts.items() if k.startswith("truth_")
        }
        (truth_tmp / "manifest.json").write_text(
            json.dumps({**manifest, "tables": dict(sorted(truth_counts.items()))}, indent=2) + "\n"
        )
    return manifest


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )


@world_app.command("generate")
def generate(
    ctx: typer.Context,
    users: Annotated[int | None, typer.Option(help="Number of shoppers.")] = None,
    days: Annotated[int | None, typer.Option(help="Days simulated.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; same seed, same bytes.")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    out: Annotated[Path | None, typer.Option(help="Raw tables folder [workspace raw/].")] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Truth folder [a 'truth' folder beside --out].")
    ] = None,
) -> None:
    """Generate the simulated shop as Parquet tables, with its ground truth beside them."""
    settings: Settings = ctx.obj
    cfg = _config(settings, users=users, days=days, seed=seed, start=start)
    out = out or settings.raw_dir
    truth = truth or out.parent / "truth"
    manifest = write_world(cfg, out, truth, console)
    console.print(f"wrote {out} and {truth}")
    _print_summary(out, manifest)


def _config(settings: Settings, **overrides: Any) -> WorldConfig:
    try:
        base = load_world_conf(settings.conf / "world.yaml")
        if overrides.get("start") is not None:
            overrides["start"] = dt.date.fromisoformat(overrides["start"])
        base.update({k: v for k, v in overrides.items() if v is not None})
        return WorldConfig(**base)
    except (ValueError, OSError) as exc:
        err.print(f"[red]world configuration: {exc}[/red]")
        raise typer.Exit(code=2) from exc


def _print_summary(raw: Path, manifest: dict) -> None:
    columns = {
        "orders": ["user_id", "amount"],
        "shipments": ["late", "damaged", "cost"],
        "users": ["user_id"],
    }
    tables = {
        t: pq.read_table(raw / f"{t}.parquet", columns=c)
        for t, c in columns.items()
        if (raw / f"{t}.parquet").exists()
    }
    figures = summarise(tables, manifest["tables"])
    console.print(
        f"world {manifest['start'][:10]} .. {manifest['end'][:10]}, seed {manifest['seed']}"
    )
    table = Table()
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


def world_demo(settings: Settings) -> None:
    """The demo's world stage: generate the default world, validate it, summarise it."""
    cfg = _config(settings)
    out, truth = settings.raw_dir, settings.truth_dir
    manifest = write_world(cfg, out, truth, console)
    violations = validate_dir(out)
    if violations:
        for v in violations:
            err.print(f"[red]{v}[/red]")
        raise typer.Exit(code=2)
    console.print(f"[green]world valid[/green]: {len(manifest['tables'])} tables in {out}")
    _print_summary(out, manifest)
