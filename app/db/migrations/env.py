"""Alembic environment: URL from the gateway's Settings, metadata from ``app.db.tables``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from app.core.config import Settings
from app.db import (
    openai_tables,  # noqa: F401 (registers the table)
    webhook_tables,  # noqa: F401 (registers the tables)
)
from app.db import tables as models  # registers the tables
from app.db.engine import make_engine

config = context.config
target_metadata = models.METADATA


def _database_url() -> str:
    # run_migrations() passes the URL explicitly; the alembic command line reads Settings.
    url = config.attributes.get("database_url")
    return str(url) if url else Settings().database_url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    _configure(url=_database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_with(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.connect() as conn:
            _run_with(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
