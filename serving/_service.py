"""What the running service holds: its database, rules, online scores, clock and metrics.

Built once at start-up by the caller (`flows.steps.serving`), handed to `create_app`; nothing
here reads the environment or a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cadence.serving._config import ServingConf
from cadence.serving._keys import KeyCache
from cadence.serving._metrics import Metrics
from cadence.serving._plan import Logistics
from cadence.serving._routing import Shop
from cadence.serving._scores import OnlineScores


def wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def shifted_clock(to: dt.date) -> Callable[[], dt.datetime]:
    """A clock whose today is `to` and runs on from it: replays a simulated shop, whose
    scores are as of its own last day, at the pace of the wall clock."""
    offset = dt.datetime.combine(to, dt.time(), tzinfo=dt.UTC) - dt.datetime.combine(
        wall_clock().date(), dt.time(), tzinfo=dt.UTC
    )
    return lambda: wall_clock() + offset


@dataclass
class Service:
    engine: Engine
    sessions: sessionmaker[Session]
    conf: ServingConf
    scores: OnlineScores | None
    # The key that pseudonymises user ids in logs (the database's own, `_db.pseudonym_key`).
    pseudonym_key: bytes
    clock: Callable[[], dt.datetime] = wall_clock
    # Re-reads conf/serving.yaml (admin's reload); None: the conf is fixed.
    reload_conf: Callable[[], ServingConf] | None = None
    # The champion's version, or None; readiness needs one.
    champion: Callable[[], str | None] = lambda: None
    # The shop's nodes, waves, tariff and transit times, for consolidation (read on first use;
    # it raises `LogisticsMissing` for data without them).
    logistics: Callable[[], Logistics] | None = None
    # The routing champion, network and catalogue (read on first use; it raises
    # `RoutingMissing` when there is no routing model or no network).
    routing: Callable[[], Shop] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    keys: KeyCache = field(default_factory=KeyCache)

    def __post_init__(self) -> None:
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps and
        # retries (with growing sleeps): under concurrent requests that costs more than
        # waiting in line. So on SQLite the units of work that may write take turns in this
        # process; PostgreSQL's row locks need nothing of the kind.
        # The busy paths go further: they run on one writer thread, queued on the event loop,
        # since threads handing a lock to each other wait on the GIL's switch interval each
        # time (a convoy that held the service near 100 requests a second).
        sqlite = self.engine is not None and self.engine.dialect.name == "sqlite"
        self._turn = threading.Lock() if sqlite else None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer") if sqlite else None

    def writes(self) -> contextlib.AbstractContextManager:
        """Around a unit of work that may write, run on a request's own thread."""
        return self._turn if self._turn is not None else contextlib.nullcontext()

    async def run(self, work: Callable[[], Any]) -> Any:
        """Runs a unit of work off the event loop: on SQLite, on the one writer thread."""
        if self._writer is None:
            return await anyio.to_thread.run_sync(work)

        def turn() -> Any:
            with self.writes():
                return work()

        return await asyncio.get_running_loop().run_in_executor(self._writer, turn)

    def pseudonym(self, user_id: str) -> str:
        """The user id as logs show it: a keyed hash, stable within this database."""
        return hmac.new(self.pseudonym_key, user_id.encode(), hashlib.sha256).hexdigest()[:16]
