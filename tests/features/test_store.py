"""Feast: apply, materialise to SQLite and Redis, read online, and the training-set join; a
registry that follows the build; the workspace's Feast repo, which the `feast` command line
leaves as it is.

Tiers per test: the Redis test and the `feast` command line are e2e, the others need a feature
build (data)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cadence.features import read_manifest
from cadence.features._store import (
    REPO_FILE,
    apply,
    historical_features,
    materialize,
    online_features,
    open_store,
    read_applied,
    register,
)
from cadence.features._training import training_frame
from cadence.flows.conf import FeaturesConf
from cadence.flows.steps.features import build_features


@pytest.fixture(scope="module")
def built(world_dir, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("feat")
    build_features(world_dir / "raw", home / "features", None, "duckdb", FeaturesConf())
    return home


def _latest(built: Path, family: str) -> pd.DataFrame:
    df = pd.read_parquet(built / "features" / "users" / f"{family}.parquet")
    return df[df.snapshot_at == df.snapshot_at.max()].set_index("user_id")


def _check_online(store, built: Path) -> None:
    orders = _latest(built, "orders")
    users = list(orders.index[:5])
    online = online_features(store, "repurchase_v1", [{"user_id": u} for u in users])
    online = online.set_index("user_id")
    assert online.shape[1] >= 200
    for col in ("orders_30d", "spend_365d", "days_since_last_order"):
        np.testing.assert_allclose(
            online.loc[users, col].astype(float),
            orders.loc[users, col].astype(float),
            equal_nan=True,
        )
    sessions = _latest(built, "sessions")
    np.testing.assert_array_equal(
        online.loc[users, "sessions_30d"], sessions.loc[users, "sessions_30d"]
    )


@pytest.mark.data
def test_apply_materialise_sqlite_and_read_online(built):
    store = open_store(built / "feast", "sqlite")
    names = apply(store, built / "features").names
    assert {"repurchase_v1", "routing_v1", "orders", "sessions", "node"} <= set(names)
    end = materialize(store, built / "features")
    manifest = json.loads((built / "features" / "manifest.json").read_text())
    assert end == dt.datetime.fromisoformat(manifest["snapshots"][-1])
    _check_online(store, built)
    nodes = online_features(store, "routing_v1", [{"node_id": "RDC-01"}])
    assert nodes.node_load_28d.iloc[0] > 0


def _redis_or_fail() -> str:
    import redis

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {url}: {exc}")
        pytest.skip(f"Redis is not reachable at {url}")
    return url


@pytest.mark.e2e
def test_materialise_to_redis_and_read_back(built, tmp_path):
    import redis

    url = _redis_or_fail()
    redis.Redis.from_url(url).flushdb()
    store = open_store(tmp_path / "feast", url)
    apply(store, built / "features")
    materialize(store, built / "features")
    _check_online(store, built)
    redis.Redis.from_url(url).flushdb()


@pytest.mark.data
def test_own_point_in_time_join_agrees_with_feast(built):
    store = open_store(built / "feast-hist", "sqlite")
    apply(store, built / "features")
    users = _latest(built, "orders").index[:6].tolist()
    rng = np.random.default_rng(1)
    # Between snapshots, exactly on one, and before any: all three cases of the as-of join.
    times = [
        dt.datetime(2025, 2, 10, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 3, tzinfo=dt.UTC),
        dt.datetime(2025, 4, 20, 13, 5, tzinfo=dt.UTC),
        dt.datetime(2025, 1, 5, tzinfo=dt.UTC),
    ]
    entities = pd.DataFrame(
        {
            "user_id": np.repeat(users, len(times)),
            "event_timestamp": pd.to_datetime(times * len(users), utc=True),
        }
    )
    entities = entities.sample(frac=1, random_state=int(rng.integers(100)))
    ours = training_frame(built / "features", pa.Table.from_pandas(entities, preserve_index=False))
    ours = ours.to_pandas().sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    feast = historical_features(store, "repurchase_v1", entities)
    feast = feast.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    cols = [c for c in ours.columns if c not in ("user_id", "event_timestamp")]
    assert len(cols) >= 200 and set(cols) <= set(feast.columns)
    assert (ours.user_id == feast.user_id).all()
    for c in cols:
        a = pd.to_numeric(ours[c], errors="coerce").astype(float).to_numpy()
        b = pd.to_numeric(feast[c], errors="coerce").astype(float).to_numpy()
        np.testing.assert_allclose(a, b, equal_nan=True, err_msg=c)
    early = ours.event_timestamp == pd.Timestamp("2025-01-05", tz="UTC")
    assert ours.orders_30d[early].isna().all()  # before the first snapshot: nothing
    assert ours.orders_30d[~early].notna().any()


@pytest.fixture(scope="module")
def switched(built, world_dir, tmp_path_factory) -> dict:
    """One registry: the full build applied, a scores view registered beside it, then a build
    of an order log alone (most families left out) applied over it."""
    home = tmp_path_factory.mktemp("switch")
    raw = home / "raw"
    raw.mkdir()
    for name in ("orders.parquet", "manifest.json"):
        shutil.copy(world_dir / "raw" / name, raw / name)
    build_features(raw, home / "features", None, "duckdb", FeaturesConf())
    store = open_store(home / "feast", "sqlite")
    full = apply(store, built / "features")
    register(store, _scores_like(home))
    thin = apply(store, home / "features")
    materialize(store, home / "features")
    return {"home": home, "store": store, "full": full, "thin": thin}


def _scores_like(home: Path) -> list:
    """A view that is no feature family's, as the score flow registers for a list."""
    from feast import FeatureView, Field, FileSource
    from feast.types import Float64

    from cadence.features.feature_repo.definitions import user

    path = home / "list.parquet"
    pd.DataFrame(
        {"user_id": ["u1"], "as_of": [pd.Timestamp("2025-04-01", tz="UTC")], "p": [0.5]}
    ).to_parquet(path)
    source = FileSource(name="list_source", path=str(path), timestamp_field="as_of")
    view = FeatureView(
        name="a_list", entities=[user], schema=[Field(name="p", dtype=Float64)], source=source
    )
    return [user, view]


@pytest.mark.data
def test_apply_removes_the_views_of_families_the_build_left_out(switched):
    home, store = switched["home"], switched["store"]
    families = set(read_manifest(home / "features").families)
    assert "sessions" in switched["full"].names and "sessions" not in families
    assert {"sessions", "node", "routing_v1"} <= set(switched["thin"].removed)
    views = {v.name for v in store.list_feature_views()}
    assert views == families | {"a_list"}
    assert {s.name for s in store.list_feature_services()} == {"repurchase_v1"}
    served = {p.name for p in store.get_feature_service("repurchase_v1").feature_view_projections}
    assert served == families
    # What was applied is recorded: the build, by folder and fingerprint.
    applied = read_applied(home / "feast")
    assert applied is not None
    assert applied.fingerprint == read_manifest(home / "features").fingerprint
    assert applied.families.keys() == families and not applied.nodes
    # The order log's build, materialised, serves.
    user = _latest(home, "orders").index[0]
    online = online_features(store, "repurchase_v1", [{"user_id": user}])
    assert online.orders_365d.iloc[0] >= 1


def _feast(repo: Path, *args: str) -> str:
    """The `feast` command line, run in the workspace's repo as a user would."""
    feast = Path(sys.executable).with_name("feast")
    r = subprocess.run(
        [str(feast), *args], cwd=repo, capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _definition(obj) -> bytes:
    """An object as registered, without the times it was registered at."""
    proto = obj.to_proto()
    fields = proto.DESCRIPTOR.fields_by_name
    if "spec" in fields:
        proto = proto.spec
    elif "meta" in fields:
        proto.ClearField("meta")
    return proto.SerializeToString(deterministic=True)


def _registry(repo: Path) -> dict:
    store = open_store(repo, "sqlite")
    return {
        kind: sorted((o.name, _definition(o)) for o in objects)
        for kind, objects in {
            "entities": store.list_entities(),
            "views": store.list_feature_views(),
            "services": store.list_feature_services(),
            "sources": store.list_data_sources(),
        }.items()
    }


@pytest.mark.e2e
def test_the_feast_command_line_in_the_workspace_repo_changes_nothing(switched):
    repo = switched["home"] / "feast"
    assert (repo / REPO_FILE).is_file()
    before = _registry(repo)
    assert {"a_list", "orders"} <= {name for name, _ in before["views"]}
    plan = _feast(repo, "plan")
    assert "No changes to registry" in plan and "No changes to infrastructure" in plan, plan
    assert "Deleted" not in plan and "Created" not in plan
    _feast(repo, "apply")
    assert _registry(repo) == before
