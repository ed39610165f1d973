"""What the running service holds: its database, rules, online scores, clock and metrics.

Built once at start-up by the caller (`flows.steps.serving`), handed to `create_app`; nothing
here reads the environment or a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cadence.serving._config import ServingConf
from cadence.serving._metrics import Metrics
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
    metrics: Metrics = field(default_factory=Metrics)

    def pseudonym(self, user_id: str) -> str:
        """The user id as logs show it: a keyed hash, stable within this database."""
        return hmac.new(self.pseudonym_key, user_id.encode(), hashlib.sha256).hexdigest()[:16]
