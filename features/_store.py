"""Feast: rendering the repo config, registering the definitions, materialising, reading."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from string import Template
from urllib.parse import urlparse

import pandas as pd
from feast import FeatureStore

from cadence.features._manifest import read_manifest
from cadence.features.feature_repo.definitions import SCORES_VIEW, definitions, scores_view

_TEMPLATE = Path(__file__).parent / "feature_repo" / "feature_store.yaml"


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


def apply(store: FeatureStore, features_dir: Path) -> list[str]:
    """Registers entities, views and services for the families built in `features_dir`."""
    import pyarrow.parquet as pq

    built = {
        name: pq.read_schema(features_dir / "users" / f"{name}.parquet").names[2:]
        for name in read_manifest(features_dir).families
    }
    objects = definitions(features_dir, built)
    with _feast_output():
        store.apply(objects)
    return [getattr(o, "name", "") for o in objects]


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
    """Loads the latest snapshot of every view into the online store; returns its time."""
    snaps = read_manifest(features_dir).snapshots
    end = max(snaps)
    # One microsecond past the last snapshot: Feast's window excludes its end.
    with _feast_output():
        store.materialize(
            start_date=min(snaps) - dt.timedelta(seconds=1),
            end_date=end + dt.timedelta(microseconds=1),
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


def publish_scores(store: FeatureStore, scores: Path) -> dt.datetime:
    """Registers the scores view over a list's Parquet file and loads it into the online
    store; returns the list's as-of time."""
    import pyarrow.parquet as pq

    as_of = pq.read_table(scores, columns=["as_of"]).column(0)[0].as_py()
    with _feast_output():
        store.apply(scores_view(scores))
        store.materialize(
            start_date=as_of - dt.timedelta(seconds=1),
            end_date=as_of + dt.timedelta(microseconds=1),
            feature_views=[SCORES_VIEW],
        )
    return as_of
