"""A SQLite dialect that accepts (and ignores) a user and password in its URL, for tests.

SQLite URLs cannot carry credentials, but a test of "the password never reaches a log" needs a
database URL with one that really works, without a Postgres server:
``sqlite+withpassword://user:secret@/relative/path.db``. ``register()`` makes it known to
SQLAlchemy in the calling process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL

__all__ = ["SQLiteWithPassword", "register"]


class SQLiteWithPassword(SQLiteDialect_pysqlite):
    """pysqlite, with the URL's user and password dropped before connecting."""

    def create_connect_args(self, url: URL) -> Any:
        bare = URL.create(url.drivername, database=url.database, query=url.query)
        return super().create_connect_args(bare)


def register() -> None:
    """Make ``sqlite+withpassword://`` URLs usable in this process."""
    registry.register("sqlite.withpassword", __name__, "SQLiteWithPassword")
