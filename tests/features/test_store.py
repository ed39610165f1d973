"""Feast: apply, materialise to SQLite and Redis, read online, and the training-set join.

Tiers per test: the Redis test needs a server (e2e), the others a feature build (data)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cadence.features._store import (
    apply,
    historical_features,
    materialize,
    online_features,
    open_store,
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
    names = apply(store, built / "features")
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
