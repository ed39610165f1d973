"""Feast: rendering the repo config, registering the definitions, materialising, reading."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlparse

import pandas as pd
from feast import FeatureStore
from pydantic import BaseModel, ConfigDict, ValidationError

from cadence.features._manifest import read_manifest
from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES
from cadence.features.feature_repo.definitions import (
    definitions,
    published_scores_views,
    scores_view,
)

_TEMPLATE = Path(__file__).parent / "feature_repo" / "feature_store.yaml"
# What `apply` registered, and the repo file declaring it, in the workspace's Feast repo.
APPLIED_FILE = "applied.json"
REPO_FILE = "cadence_repo.py"
_REPO_TEXT = '''"""This workspace's Feast definitions, written by `cadence features apply`.

They declare exactly what that command registers: the views and services of the feature build
it applied (recorded in applied.json beside this file) and the scores views over the
workspace's latest lists. So `feast plan` here finds nothing to change and `feast apply`
changes nothing. After a new build, run `cadence features apply` rather than editing this file.
"""

from pathlib import Path

from cadence.features._store import applied_objects

globals().update(applied_objects(Path(__file__).resolve().parent))
'''


def online_store_yaml(online_store: str, feast_dir: Path) -> str:
    """`sqlite` (a file in the workspace) or `redis://host:port[/db]`."""
    if online_store == "sqlite":
        return f"  type: sqlite\n  path: {(feast_dir / 'online.db').resolve()}"
    url = urlparse(online_store)
    if url.scheme != "redis" or not url.hostname:
        raise ValueError(
            f"online store '{online_store}': expected 'sqlite' or redis://host:port[/db]"
        )
    conn = f"{url.hostname}:{url.port or 6379}"
    if url.path.strip("/"):
        conn += f",db={url.path.strip('/')}"
    return f'  type: redis\n  connection_string: "{conn}"'


def render_repo(feast_dir: Path, online_store: str) -> Path:
    """Writes the workspace's feature_store.yaml from the template; returns the repo path."""
    feast_dir.mkdir(parents=True, exist_ok=True)
    text = Template(_TEMPLATE.read_text()).substitute(
        registry=str((feast_dir / "registry.db").resolve()),
        online_store=online_store_yaml(online_store, feast_dir),
    )
    (feast_dir / "feature_store.yaml").write_text(text)
    return feast_dir


def open_store(feast_dir: Path, online_store: str) -> FeatureStore:
    return FeatureStore(repo_path=str(render_repo(feast_dir, online_store)))


class AppliedBuild(BaseModel):
    """The feature build `apply` registered: its folder, fingerprint and each family's columns
    (so materialising can tell a registry applied from another build, and the repo file can
    declare exactly what was registered), and the lists folder its scores views come from."""

    model_config = ConfigDict(extra="forbid")

    features_dir: str
    fingerprint: str | None
    families: dict[str, list[str]]
    nodes: bool
    lists_dir: str | None = None
    applied_at: dt.datetime


def read_applied(feast_dir: Path) -> AppliedBuild | None:
    """What the last `apply` registered in `feast_dir`; None when nothing was applied."""
    path = Path(feast_dir) / APPLIED_FILE
    if not path.exists():
        return None
    try:
        return AppliedBuild.model_validate_json(path.read_bytes())
    except (ValidationError, OSError) as exc:
        raise ValueError(
            f"{path}: unreadable ({exc}); run `cadence features apply` to rewrite it"
        ) from exc


@dataclass(frozen=True)
class Registered:
    """What the registry holds after `apply` (names), and the views and services it removed."""

    names: list[str]
    removed: list[str]


def apply(store: FeatureStore, features_dir: Path, *, lists_dir: Path | None = None) -> Registered:
    """Makes the registry hold exactly the entities, views and services of the build in
    `features_dir`, plus the scores views over the latest lists: views and services of
    families the build left out are removed. Then records what it applied and writes the repo
    file declaring it, so the `feast` command line in the repo finds nothing to change."""
    import pyarrow.parquet as pq

    from cadence.ingest import write_text_atomic

    manifest = read_manifest(features_dir)
    features_dir = Path(features_dir).resolve()
    record = AppliedBuild(
        features_dir=str(features_dir),
        fingerprint=manifest.fingerprint,
        families={
            name: pq.read_schema(features_dir / "users" / f"{name}.parquet").names[2:]
            for name in manifest.families
        },
        nodes=(features_dir / "nodes.parquet").exists(),
        lists_dir=str(Path(lists_dir).resolve()) if lists_dir is not None else None,
        applied_at=dt.datetime.now(dt.UTC),
    )
    objects = _objects(record, store)
    before = {
        (type(o).__name__, o.name)
        for o in (*store.list_feature_views(), *store.list_feature_services())
    }
    with _feast_output():
        _apply_total(store, objects)
    repo = Path(store.repo_path)
    write_text_atomic(repo / APPLIED_FILE, record.model_dump_json(indent=2) + "\n")
    write_text_atomic(repo / REPO_FILE, _REPO_TEXT)
    removed = before - {(type(o).__name__, o.name) for o in objects}
    return Registered([o.name for o in objects], sorted(name for _, name in removed))


def applied_objects(feast_dir: Path) -> dict[str, object]:
    """The objects the last `apply` registered in `feast_dir`, keyed by kind and name: the
    repo file there declares them as module attributes, which is how Feast reads a repo."""
    record = read_applied(feast_dir)
    if record is None:
        raise ValueError(f"{feast_dir}: nothing applied yet; run `cadence features apply`")
    from feast import FeatureView

    store = FeatureStore(repo_path=str(feast_dir))
    objects = _objects(record, store)
    # Materialising records its windows in the registered views, and Feast's plan compares
    # them too: the declarations carry the registry's windows (state, not definition), so a
    # materialised view is not reported changed.
    windows = {v.name: v.materialization_intervals for v in store.list_feature_views()}
    for o in objects:
        if isinstance(o, FeatureView) and o.name in windows:
            o.materialization_intervals = list(windows[o.name])
    return {f"{type(o).__name__}_{o.name}": o for o in objects}


def _objects(record: AppliedBuild, store: FeatureStore) -> list:
    """The build's definitions and the scores views, each (kind, name) once."""
    objects = [
        *definitions(Path(record.features_dir), record.families, nodes=record.nodes),
        *_published_scores(record, store),
    ]
    unique: dict[tuple[str, str], object] = {}
    for o in objects:
        unique.setdefault((type(o).__name__, o.name), o)
    return list(unique.values())


def _published_scores(record: AppliedBuild, store: FeatureStore) -> list:
    """The scores views (and their services) over the lists in the lists folder; without one,
    every registered view that is no catalogue family's, and the services over only those,
    kept as the registry holds them."""
    if record.lists_dir is not None:
        return published_scores_views(Path(record.lists_dir))
    families = {f.name for f in (*USER_FAMILIES, *NODE_FAMILIES)}
    views = [v for v in store.list_feature_views() if v.name not in families]
    kept = {v.name for v in views}
    services = [
        s
        for s in store.list_feature_services()
        if s.feature_view_projections and all(p.name in kept for p in s.feature_view_projections)
    ]
    return [*views, *services]


def register(store: FeatureStore, objects: list) -> None:
    """Adds or replaces `objects` in the registry and keeps everything else, as `feast apply`
    would on a repo declaring both; the registry's record of the online store's tables
    follows, so `feast plan` in the repo still finds nothing to change."""
    current = [*store.list_entities(), *store.list_feature_views(), *store.list_feature_services()]
    merged = {(type(o).__name__, o.name): o for o in [*current, *objects]}
    with _feast_output():
        _apply_total(store, list(merged.values()))


def _apply_total(store: FeatureStore, objects: list) -> None:
    """What `feast apply` runs on a repo: registered objects the repo does not declare are
    deleted, and (SQLite) the registry records the online store's tables."""
    from feast.repo_operations import apply_total_with_repo_instance

    apply_total_with_repo_instance(
        store, store.project, store.registry, _contents(store, objects), False
    )


def _contents(store: FeatureStore, objects: list):
    """The objects as `feast apply` reads them from a repo that declares them."""
    from feast import Entity, FeatureService, FeatureView
    from feast.feature_view import DUMMY_ENTITY
    from feast.project import Project
    from feast.repo_contents import RepoContents

    views = [o for o in objects if isinstance(o, FeatureView)]
    entities = {o.name: o for o in objects if isinstance(o, Entity)}
    entities.setdefault(DUMMY_ENTITY.name, DUMMY_ENTITY)
    return RepoContents(
        projects=[Project(name=store.project, description=store.config.project_description or "")],
        data_sources=[v.batch_source for v in views if v.batch_source is not None],
        feature_views=views,
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=list(entities.values()),
        feature_services=[o for o in objects if isinstance(o, FeatureService)],
        permissions=[],
    )


@contextlib.contextmanager
def _feast_output() -> Iterator[None]:
    """Feast prints its progress (coloured, even when piped) and draws tqdm bars; both go to
    the `feast` logger instead, which the command line sends to the workspace log."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    finally:
        text = out.getvalue().strip()
        if text:
            logging.getLogger("feast").info("%s", text)


def materialize(store: FeatureStore, features_dir: Path) -> dt.datetime:
    """Loads the latest snapshot of the build's views into the online store (the scores views
    are loaded when a list is published); returns its time."""
    manifest = read_manifest(features_dir)
    snaps = manifest.snapshots
    end = max(snaps)
    views = [*manifest.families, *([NODE_FAMILIES[0].name] if manifest.node_features else [])]
    # One microsecond past the last snapshot: Feast's window excludes its end.
    with _feast_output():
        store.materialize(
            start_date=min(snaps) - dt.timedelta(seconds=1),
            end_date=end + dt.timedelta(microseconds=1),
            feature_views=views,
        )
    return end


class OnlineReader:
    """Reads one feature service; resolves the service once (a registry lookup costs ~40 ms)."""

    def __init__(self, store: FeatureStore, service: str) -> None:
        self.store = store
        self.service = store.get_feature_service(service)

    def read(self, entity_rows: list[dict]) -> dict[str, list]:
        return self.store.get_online_features(
            features=self.service, entity_rows=entity_rows
        ).to_dict()


def online_features(store: FeatureStore, service: str, entity_rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(OnlineReader(store, service).read(entity_rows))


def historical_features(store: FeatureStore, service: str, entities: pd.DataFrame):
    """Feast's own point-in-time join (`entities`: user_id, event_timestamp)."""
    fs = store.get_feature_service(service)
    return store.get_historical_features(entity_df=entities, features=fs).to_df()


def publish_scores(store: FeatureStore, lists_dir: Path, model: str) -> dt.datetime:
    """Registers the model's scores view over its latest list
    (`<lists_dir>/<model>/latest/scores.parquet`) and loads that list into the online store;
    returns the list's as-of time."""
    import pyarrow.parquet as pq

    from cadence.features.feature_repo.definitions import user

    objects = scores_view(model, lists_dir)
    view = objects[0]
    as_of = pq.read_table(view.batch_source.path, columns=["as_of"]).column(0)[0].as_py()
    register(store, [user, *objects])
    with _feast_output():
        store.materialize(
            start_date=as_of - dt.timedelta(seconds=1),
            end_date=as_of + dt.timedelta(microseconds=1),
            feature_views=[view.name],
        )
    return as_of
