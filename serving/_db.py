"""The service database: an engine for a URL, its migrations, and its pseudonym key.

SQLite (the default, a file in the workspace) runs in WAL mode, so readers never wait for the
writer, with `synchronous=NORMAL`: a committed transaction survives the process being killed
(the WAL is in the operating system's hands once written), though not a power cut, which
needs `FULL`. Writers queue on `busy_timeout`. PostgreSQL is the production database.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cadence.serving._tables import ServiceMeta

_MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(RuntimeError):
    """The service database cannot be reached or migrated; the message says which and why."""


def engine_for(url: str, *, pool_size: int = 20) -> Engine:
    """An engine for `url` (sqlite:///path or postgresql+psycopg://...)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=pool_size
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(engine: Engine) -> str:
    """Brings the database to the latest schema (Alembic, `upgrade head`); returns the
    revision it is at."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            revision = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # the driver's own error says what failed; name the database
        raise DatabaseError(f"database {engine.url!r}: cannot migrate it ({exc})") from exc
    return revision or ""


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def pseudonym_key(session: Session) -> bytes:
    """The database's own key for pseudonymising user ids in logs, made on first use."""
    row = session.scalar(select(ServiceMeta).where(ServiceMeta.name == "log_pseudonym_key"))
    if row is None:
        session.add(ServiceMeta(name="log_pseudonym_key", value=secrets.token_hex(32)))
        try:
            session.commit()
        except IntegrityError:  # another process made it first
            session.rollback()
        row = session.scalar(select(ServiceMeta).where(ServiceMeta.name == "log_pseudonym_key"))
    return bytes.fromhex(row.value)
