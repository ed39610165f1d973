"""`cadence features ...`: list the catalogue, build features, register them with Feast."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import pyarrow.parquet as pq
import typer
import yaml
from rich.console import Console
from rich.table import Table

from features import (
    ENGINES,
    FeatureInputError,
    catalogue_markdown,
    check_range,
    compute,
    connect,
    default_grid,
    load_sources,
    parse_snapshots,
    split_by_family,
)
from features.catalogue import NODE_FAMILIES, USER_FAMILIES
from flows._warnings import quiet
from flows.settings import Settings
from ingest import SCHEMAS, read_end, staged_dir, type_problems

features_app = typer.Typer(help="User and node features.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

# Snapshots are computed in batches of about this many (user, snapshot) rows.
ROWS_PER_BATCH = 1_000_000


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def load_features_conf(path: Path) -> dict[str, int]:
    data = yaml.safe_load(path.read_text()) or {}
    known = {"snapshots", "longest_horizon_days"}
    if set(data) - known:
        raise ValueError(f"{path}: unknown key(s) {sorted(set(data) - known)}")
    snaps = data.get("snapshots") or {}
    return {
        "every_days": int(snaps.get("every_days", 7)),
        "first_after_days": int(snaps.get("first_after_days", 28)),
        "horizon_days": int(data.get("longest_horizon_days", 30)),
    }


@features_app.command("list")
def list_features(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the feature catalogue."""
    rows = [
        {
            "name": f.name,
            "family": f.family,
            "entity": fam.entity,
            "window_days": f.window,
            "dtype": f.dtype,
            "description": f.description,
        }
        for fam in (*USER_FAMILIES, *NODE_FAMILIES)
        for f in fam.features
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} features")
    for col in ("name", "family", "window", "type", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], r["family"], str(r["window_days"] or ""), r["dtype"], r["description"]
        )
    console.print(table)


@features_app.command("docs")
def docs(
    out: Annotated[Path, typer.Option(help="Where to write the catalogue.")] = Path(
        "docs/features.md"
    ),
) -> None:
    """Regenerate docs/features.md from the catalogue."""
    out.write_text(catalogue_markdown())
    console.print(f"wrote {out}")


def raw_inputs(raw: Path) -> tuple[dict[str, Path], dt.datetime, dt.datetime]:
    """The raw tables present, and the data's start and end; refuses what features cannot use."""
    if not (raw / "orders.parquet").exists():
        raise FeatureInputError(f"{raw}: no orders.parquet; features need at least orders")
    tables = {t: raw / f"{t}.parquet" for t in SCHEMAS if (raw / f"{t}.parquet").exists()}
    for name, path in tables.items():
        for column, problem in type_problems(name, pq.read_schema(path)):
            raise FeatureInputError(f"table {name}, column {column}: {problem}")
    ts = pq.read_table(tables["orders"], columns=["ordered_at"]).column(0)
    first, last = ts.combine_chunks().to_pandas().agg(["min", "max"])
    end = read_end(raw)
    manifest = raw / "manifest.json"
    start = None
    if manifest.exists():
        start = json.loads(manifest.read_text()).get("start")
    start_t = dt.datetime.fromisoformat(start) if start else first.to_pydatetime()
    end_t = end.to_pydatetime() if end is not None else last.to_pydatetime()
    return tables, start_t.astimezone(dt.UTC), end_t.astimezone(dt.UTC)


def build_features(
    raw: Path, out: Path, snapshots: list[dt.datetime] | None, engine: str, conf: dict[str, int]
) -> dict[str, Any]:
    """Computes every available family and swaps the result into `out` whole."""
    tables, start, end = raw_inputs(raw)
    if snapshots is None:
        snapshots = default_grid(
            start,
            end,
            every_days=conf["every_days"],
            first_after_days=conf["first_after_days"],
            horizon_days=conf["horizon_days"],
        )
    try:
        check_range(snapshots, start, end)
    except ValueError as exc:
        raise FeatureInputError(str(exc)) from exc
    con = connect(engine)
    src = load_sources(con, tables)
    n_users = pq.read_metadata(tables["users" if "users" in tables else "orders"]).num_rows
    rows, families, n_nodes = 0, None, 0
    with staged_dir(out) as tmp:
        (tmp / "users").mkdir()
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            # Snapshots go in batches of about a million rows, so memory stays bounded.
            for batch in _batches(snapshots, max(1, ROWS_PER_BATCH // max(n_users, 1))):
                result = compute(con, src, batch)
                families = result.families
                rows += result.users.num_rows
                parts = split_by_family(result.users, result.families)
                if result.nodes is not None:
                    parts["_nodes"] = result.nodes
                    n_nodes = result.nodes.num_columns - 2
                for name, table in parts.items():
                    if name not in writers:
                        path = (
                            tmp / "nodes.parquet"
                            if name == "_nodes"
                            else (tmp / "users" / f"{name}.parquet")
                        )
                        writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
                    writers[name].write_table(table)
        finally:
            for w in writers.values():
                w.close()
        assert families is not None
        columns = {
            name: pq.read_schema(tmp / "users" / f"{name}.parquet").names[2:]
            for name in writers
            if name != "_nodes"
        }
        manifest = {
            "engine": engine,
            "data": str(raw),
            "snapshots": [s.isoformat() for s in snapshots],
            "rows": rows,
            "user_features": sum(len(c) for c in columns.values()),
            "families": {name: len(c) for name, c in columns.items()},
            "families_left_out": [f.name for f in USER_FAMILIES if f not in families],
            "node_features": n_nodes,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@features_app.command("build")
def build(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help="Raw tables [workspace raw/].")] = None,
    snapshots: Annotated[
        str | None,
        typer.Option(help="START:END:7d or a comma-separated list [weekly grid + the end]."),
    ] = None,
    engine: Annotated[str, typer.Option(help="duckdb (in-process) or spark.")] = "duckdb",
) -> None:
    """Compute every feature as of each snapshot (events strictly before it)."""
    settings: Settings = ctx.obj
    raw = data or settings.raw_dir
    try:
        if engine not in ENGINES:
            raise FeatureInputError(f"--engine must be one of {', '.join(ENGINES)}")
        conf = load_features_conf(settings.conf / "features.yaml")
        snaps = parse_snapshots(snapshots) if snapshots else None
        with console.status(f"building features with {engine}"):
            manifest = build_features(raw, settings.features_dir, snaps, engine, conf)
    except (FeatureInputError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    console.print(
        f"built {manifest['user_features']} user features x {manifest['rows']:,} rows "
        f"({len(manifest['snapshots'])} snapshots, {engine}) and "
        f"{manifest['node_features']} node features into {settings.features_dir}"
    )
    if manifest["families_left_out"]:
        console.print(
            f"left out (their tables are missing): {', '.join(manifest['families_left_out'])}"
        )


def _store(settings: Settings):
    from features._store import open_store

    quiet()
    if not (settings.features_dir / "manifest.json").exists():
        err.print(
            f"[red]no features in {settings.features_dir}; run `cadence features build`[/red]"
        )
        raise typer.Exit(code=2)
    return open_store(settings.feast_dir, settings.online_store)


@features_app.command("apply")
def apply_cmd(ctx: typer.Context) -> None:
    """Register entities, one view per family and the feature services in Feast."""
    from features._store import apply

    settings: Settings = ctx.obj
    store = _store(settings)
    with console.status("feast apply"):
        names = apply(store, settings.features_dir)
    console.print(f"registered {len(names)} Feast objects in {settings.feast_dir}")


@features_app.command("materialize")
def materialize_cmd(ctx: typer.Context) -> None:
    """Load the latest snapshot of every view into the online store."""
    from features._store import materialize

    settings: Settings = ctx.obj
    store = _store(settings)
    with console.status(f"materialising to {settings.online_store}"):
        end = materialize(store, settings.features_dir)
    console.print(f"materialised features as of {end.isoformat()} to {settings.online_store}")


@features_app.command("online")
def online_cmd(
    ctx: typer.Context,
    users: Annotated[list[str], typer.Argument(help="User ids.")],
    service: Annotated[str, typer.Option(help="Feature service.")] = "repurchase_v1",
) -> None:
    """Read a feature service's online vector for some users (as JSON)."""
    from features._store import online_features

    settings: Settings = ctx.obj
    frame = online_features(_store(settings), service, [{"user_id": u} for u in users])
    typer.echo(frame.to_json(orient="records", indent=2))


def features_demo(settings: Settings) -> None:
    """The demo's feature stage: build on the default grid, register, materialise."""
    from features._store import apply, materialize, open_store

    quiet()
    conf = load_features_conf(settings.conf / "features.yaml")
    with console.status("building features"):
        manifest = build_features(settings.raw_dir, settings.features_dir, None, "duckdb", conf)
    console.print(
        f"built {manifest['user_features']} user features x {manifest['rows']:,} rows "
        f"({len(manifest['snapshots'])} snapshots) and {manifest['node_features']} "
        "node features"
    )
    store = open_store(settings.feast_dir, settings.online_store)
    with console.status("registering in Feast and materialising"):
        apply(store, settings.features_dir)
        end = materialize(store, settings.features_dir)
    console.print(
        f"feast: views applied, features as of {end.date()} in the "
        f"{settings.online_store} online store"
    )
