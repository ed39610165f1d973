"""Alembic's entry point for the service database: run by `serving._db.migrate`, which hands
over an open connection (`config.attributes["connection"]`), or by `alembic` with a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cadence.serving._tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
