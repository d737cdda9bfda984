"""Database engine, sessions and migrations (SQLite by default: WAL and foreign keys on)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "checkpoint",
    "checkpoint_forever",
    "make_engine",
    "open_session",
    "run_migrations",
]

logger = logging.getLogger(__name__)

# Inside the package, so an installed wheel (the Docker image) can migrate its database.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


# Checkpoints (copying the WAL back into the database, with an fsync) are run by
# ``checkpoint_forever`` on a worker thread. SQLite's own automatic checkpoint runs inside the
# commit that crosses its threshold, on the event loop: measured here, it turned a 0.1 ms
# commit into a 5-17 ms one every few hundred commits. It stays as a safety net only, far above
# what the background checkpoints let the WAL grow to.
CHECKPOINT_SECONDS = 1.0
AUTOCHECKPOINT_PAGES = 20_000  # about 80 MB of WAL


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets SSE readers and the run service read while a run is written; foreign keys are
    # off by default in SQLite; the busy timeout rides out short write contention.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()


def checkpoint(engine: Engine) -> tuple[int, int, int] | None:
    """Copy what the WAL holds into the database without waiting for anyone (PASSIVE).

    Returns SQLite's (busy, frames in the WAL, frames checkpointed), or None when the
    database is not SQLite.
    """
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as connection:
        row = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    return int(row[0]), int(row[1]), int(row[2])


async def checkpoint_forever(engine: Engine, interval: float = CHECKPOINT_SECONDS) -> None:
    """Checkpoint the WAL every ``interval`` seconds on a worker thread (the app's lifespan)."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await asyncio.to_thread(checkpoint, engine) is None:
                return
        except Exception:  # a busy or locked database: the next round tries again
            logger.warning("WAL checkpoint failed", exc_info=True)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get the pragmas above."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def open_session(engine: Engine) -> Iterator[Session]:
    """Yield one session (for FastAPI dependencies)."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` for the database at ``url`` (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w]+)['\"]?", re.M)


MIGRATION_LOCK = 0x6761746577617931  # any constant the replicas share ("gatewy1")


def head_revision() -> str:
    """The newest migration's revision, read from the migration files (Alembic's own answer
    costs its import and a scan, about a tenth of the gateway's start)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found: dict[str, str] = dict(_REVISION.findall(path.read_text()))
        revisions.add(found["revision"])
        if found.get("down_revision") not in (None, "None"):
            parents.add(found["down_revision"])
    (head,) = revisions - parents
    return head


def _create_at_head(url: str) -> bool:
    """Create the tables of an empty SQLite database from the models and stamp it at the head
    (what Alembic's documentation advises for a new database): a first start without
    Alembic's import, about 0.15 s and 10 MB. False, touching nothing, if it has any table.

    The migrations and the models describe one schema; ``tests/app/test_storage.py`` checks
    both ways of making it against the models.
    """
    from app.db import openai_tables, tables, webhook_tables  # noqa: F401 (registers them)

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if inspect(connection).get_table_names():
                return False
            tables.METADATA.create_all(connection)
            connection.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL,"
                " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            connection.execute(
                text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                {"head": head_revision()},
            )
        return True
    finally:
        engine.dispose()


def _current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
            return None if row is None else str(row[0])
    finally:
        engine.dispose()


def run_migrations(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` with Alembic (nothing to do, and Alembic
    not even imported, when it is at the head already or is a new SQLite file)."""
    if revision == "head":
        current = _current_revision(url)
        if current == head_revision():
            return
        if current is None and url.startswith("sqlite") and _create_at_head(url):
            return
    from alembic import command

    if not url.startswith("postgresql"):
        command.upgrade(alembic_config(url), revision)
        return
    # Replicas starting together on one PostgreSQL database: one migrates, the others wait
    # for it (a session-level advisory lock), then find nothing left to do.
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
            try:
                config = alembic_config(url)
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()
    finally:
        engine.dispose()
