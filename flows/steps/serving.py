"""Serving step: the merge service's database (migrated on open), its keys, and the running
service built from the workspace (online store, champion, conf/serving.yaml)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import TYPE_CHECKING

from cadence.flows.conf import Conf
from cadence.flows.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cadence.serving._service import Service

log = logging.getLogger(__name__)


def database(settings: Settings) -> Engine:
    """The service database at its latest schema (migrated here when behind)."""
    from cadence.serving._db import engine_for, migrate

    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.serving_database)
    migrate(engine)
    return engine


def create_key(settings: Settings, role: str, note: str = "") -> str:
    from cadence.serving._db import sessions
    from cadence.serving._keys import create_key as make
    from cadence.serving._tables import ROLES

    if role not in ROLES:  # before the database is made or touched
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    engine = database(settings)
    try:
        with sessions(engine)() as session:
            return make(session, role, note=note)
    finally:
        engine.dispose()


def revoke_key(settings: Settings, key_id: str) -> bool:
    from cadence.serving._db import sessions
    from cadence.serving._keys import revoke_key as revoke

    if settings.database_url is None and not (settings.home / "serving.db").exists():
        return False  # no service database, so no key
    engine = database(settings)
    try:
        with sessions(engine)() as session:
            return revoke(session, key_id, actor="cli")
    finally:
        engine.dispose()


def online_scores(settings: Settings, conf: Conf):
    """The online store's scores of the offers' model; None when none are published yet."""
    from cadence.features._store import open_store
    from cadence.serving._scores import OnlineScores, ScoresMissing

    if not (settings.feast_dir / "registry.db").exists():
        return None
    store = open_store(settings.feast_dir, settings.online_store)
    try:
        return OnlineScores(store, conf.serving.offers.model)
    except ScoresMissing as exc:
        log.warning("%s", exc)
        return None


def scores_as_of(settings: Settings, conf: Conf) -> dt.date | None:
    """The as-of date of the offers' model's latest list, or None without one."""
    import pyarrow.parquet as pq

    from cadence.features.feature_repo.definitions import LATEST_SCORES

    path = settings.lists_dir / conf.serving.offers.model / LATEST_SCORES
    if not path.exists():
        return None
    return pq.read_table(path, columns=["as_of"]).column(0)[0].as_py().date()


def logistics(settings: Settings):
    """The shop's nodes, dispatch waves, tariff and transit times, from the raw tables
    (`LogisticsMissing` when the data has none, as an order log alone)."""
    import pandas as pd

    from cadence.serving._plan import Logistics

    tables = {}
    for name in ("nodes", "dispatch_waves", "shipments"):
        path = settings.raw_dir / f"{name}.parquet"
        tables[name] = pd.read_parquet(path) if path.exists() else None
    return Logistics.from_raw(tables)


def consolidate(settings: Settings, conf: Conf, day: dt.date) -> dict:
    """Plans `day`'s orders in the service database (as `POST /v1/consolidations` does)."""
    from cadence.serving._db import sessions
    from cadence.serving._plan import plan_day
    from cadence.serving._records import Context

    found = logistics(settings)
    engine = database(settings)
    try:
        with sessions(engine)() as session:
            now = dt.datetime.now(dt.UTC)
            ctx = Context(session, "cli", now, conf.serving, scores=None)
            return plan_day(ctx, day, found)
    finally:
        engine.dispose()


def build_service(settings: Settings, conf: Conf, *, today: str | None = None) -> Service:
    """The service over this workspace. `today`: None for the wall clock, "scores" for the
    latest list's as-of date (a simulated shop's own today), or a date."""
    from cadence.flows.conf import read_file
    from cadence.serving._config import ServingConf
    from cadence.serving._db import pseudonym_key, sessions
    from cadence.serving._service import Service, shifted_clock, wall_clock

    clock = wall_clock
    if today == "scores":
        as_of = scores_as_of(settings, conf)
        if as_of is None:
            raise ValueError(
                f"--today scores: no list of {conf.serving.offers.model} yet; run the pipeline"
            )
        clock = shifted_clock(as_of)
    elif today is not None:
        try:
            clock = shifted_clock(dt.date.fromisoformat(today))
        except ValueError:
            raise ValueError(f"--today {today}: expected YYYY-MM-DD or 'scores'") from None
    engine = database(settings)
    factory = sessions(engine)
    with factory() as session:
        key = pseudonym_key(session)
    model = conf.serving.offers.model
    configured = []

    def champion() -> str | None:
        # MLflow is imported and pointed at the registry on the first readiness check, not
        # at start-up: a restarted service answers sooner.
        from cadence.models import _registry

        if not configured:
            _registry.configure(settings.home, settings.mlflow_tracking_uri)
            configured.append(True)
        return _registry.alias_version(model, _registry.CHAMPION)

    def reload() -> ServingConf:
        return read_file(settings.conf / "serving.yaml", ServingConf)

    loaded = []

    def shop_logistics():
        if not loaded:
            loaded.append(logistics(settings))
        return loaded[0]

    shops = []

    def routing_shop():
        if not shops:
            from cadence.flows.steps.routing import service_shop

            shops.append(service_shop(settings, conf))
        return shops[0]

    return Service(
        logistics=shop_logistics,
        routing=routing_shop,
        engine=engine,
        sessions=factory,
        conf=conf.serving,
        scores=online_scores(settings, conf),
        pseudonym_key=key,
        clock=clock,
        reload_conf=reload,
        champion=champion,
    )


def serve(
    settings: Settings, conf: Conf, host: str, port: int, today: str | None, workers: int = 1
) -> None:
    """Runs the service until interrupted; `workers` processes (PostgreSQL only: SQLite has
    one writer, and processes would queue on its lock)."""
    import uvicorn

    from cadence.serving.main import create_app

    if workers > 1:
        if settings.database_url is None:
            raise ValueError(
                f"--workers {workers}: more than one process needs PostgreSQL "
                "(CADENCE_DATABASE_URL); SQLite has one writer at a time"
            )
        database(settings)  # migrated once, before the workers start
        os.environ["CADENCE_SERVE_TODAY"] = today or ""
        uvicorn.run(
            "cadence.flows.steps.serving:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
        return
    service = build_service(settings, conf, today=today)
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", access_log=False)


def app_from_environment():
    """The app of one worker process of `cadence serve --workers N`, built from the
    environment the command left it (`CADENCE_*`, and `CADENCE_SERVE_TODAY`)."""
    from cadence.serving.main import create_app

    settings = Settings()
    today = settings.serve_today or None
    return create_app(build_service(settings, settings.decisions(), today=today))
