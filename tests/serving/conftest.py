"""The service under test: a fresh database (SQLite file, or a new PostgreSQL database) per
test, a stand-in for the online store's scores, a fixed clock, and a key per role.

The PostgreSQL runs need the server on 127.0.0.1:5432 (trust auth); in CI (`CI=true`) its
absence fails them, elsewhere it skips them.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from cadence.serving._config import ServingConf
from cadence.serving._rules import Score

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def _postgres_or_fail():
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}")
    return admin


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A new, empty database's URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'serving.db'}"
        return
    from sqlalchemy import text

    admin = _postgres_or_fail()
    name = f"cadence_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


class Scores:
    """The online store as the service reads it, held in dicts."""

    def __init__(self) -> None:
        self.by_user: dict[str, Score] = {}
        self.categories: dict[tuple[str, str], int] = {}
        self.reads = 0

    def score(self, user_id: str) -> Score | None:
        self.reads += 1
        return self.by_user.get(user_id)

    def usual_orders(self, user_id: str, category: str | None) -> int | None:
        if category is None:
            return None
        return self.categories.get((user_id, category), 0)

    def ping(self) -> None:
        return None


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def service(db_url):
    from cadence.serving._db import engine_for, migrate, pseudonym_key, sessions
    from cadence.serving._service import Service

    engine = engine_for(db_url, pool_size=5)
    migrate(engine)
    factory = sessions(engine)
    with factory() as s:
        key = pseudonym_key(s)
    scores = Scores()
    due = NOW.date() + dt.timedelta(days=5)
    scores.by_user = {
        "u1": Score(0.8, due, "3"),
        "u2": Score(0.7, due, "3"),
        "u3": Score(0.9, due, "3"),
        "low": Score(0.1, due, "3"),
        "later": Score(0.9, NOW.date() + dt.timedelta(days=60), "3"),
    }
    for user in ("u1", "u2", "u3"):
        for category in ("diapers", "infant_formula"):
            scores.categories[(user, category)] = 4
    svc = Service(
        engine=engine,
        sessions=factory,
        conf=ServingConf(),
        scores=scores,
        pseudonym_key=key,
        clock=Clock(NOW),
        champion=lambda: "3",
    )
    yield svc
    engine.dispose()


@pytest.fixture
def keys(service) -> dict[str, str]:
    from cadence.serving._keys import create_key

    with service.sessions() as s:
        return {role: create_key(s, role) for role in ("service", "marketing", "reviewer", "admin")}


@pytest.fixture
def client(service):
    from fastapi.testclient import TestClient

    from cadence.serving.main import create_app

    with TestClient(create_app(service)) as c:
        yield c
