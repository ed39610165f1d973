"""The service's reads of the Feast online store (SQLite, and Redis on 127.0.0.1:6379): a
published list's score comes back for a listed shopper, None for anyone else."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from cadence.features._store import open_store, publish_scores
from cadence.serving._scores import OnlineScores, ScoresMissing
from tests.features.test_store import _redis_or_fail

pytestmark = pytest.mark.data
AS_OF = pd.Timestamp("2026-03-01", tz="UTC")


def _list(lists_dir):
    folder = lists_dir / "repurchase" / "latest"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "p_order_30d": [0.81, 0.12],
            "percentile": [100, 50],
            "band": ["high", "low"],
            "contact_date": [AS_OF + pd.Timedelta(days=4), pd.NaT],
            "expected_next_order_date": [AS_OF + pd.Timedelta(days=7), pd.NaT],
            "driver_1": ["a", "a"],
            "driver_2": ["b", "b"],
            "driver_3": ["c", "c"],
            "model_version": ["4", "4"],
            "as_of": [AS_OF, AS_OF],
        }
    ).to_parquet(folder / "scores.parquet")


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    online = "sqlite" if request.param == "sqlite" else _redis_or_fail()
    if online != "sqlite":
        import redis

        redis.Redis.from_url(online).flushdb()
    feast_dir = tmp_path / "feast"
    feast_dir.mkdir()
    _list(tmp_path / "lists")
    store = open_store(feast_dir, online)
    publish_scores(store, tmp_path / "lists", "repurchase")
    return store


def test_a_listed_shopper_has_their_score_and_anyone_else_none(store):
    scores = OnlineScores(store, "repurchase")
    got = scores.score("u1")
    assert got.probability == pytest.approx(0.81)
    assert got.expected_next_order == dt.date(2026, 3, 8)
    assert got.model_version == "4"
    assert scores.score("u2").expected_next_order is None
    assert scores.score("stranger") is None
    # No category features were materialised: the category rule has nothing to go on.
    assert scores.usual_orders("u1", "diapers") is None
    scores.ping()


def test_a_model_without_published_scores_is_named(store):
    with pytest.raises(ScoresMissing, match="repurchase_7d_scores"):
        OnlineScores(store, "repurchase-7d")
