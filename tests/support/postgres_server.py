"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster on loopback.

``running_postgres()`` runs ``initdb`` into a temporary folder and starts ``postgres`` on a free
loopback port (as the ``postgres`` user when the tests run as root, which PostgreSQL refuses to
run as), with durability off (``fsync=off``: the cluster dies with the session anyway). Each
test gets a database of its own, copied from a template that already holds the gateway's
schema (``CREATE DATABASE ... TEMPLATE``: milliseconds, no migrations per test).

The test command installs the ``postgresql`` package when it is missing (``scripts/test``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PostgresServer", "find_binaries", "running_postgres"]

TEMPLATE = "gateway_template"


def find_binaries() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (the newest version), or None."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=_version)
    return versions[-1].parent if versions else None


def _version(path: Path) -> int:
    name = path.parent.parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A started cluster: where it listens, and fresh databases on demand."""

    def __init__(self, port: int, user: str) -> None:
        self.port = port
        self.user = user

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.encode())

    def make_template(self) -> None:
        """The database every test's copy starts from: the gateway's schema at head."""
        from app.db.engine import run_migrations

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        run_migrations(self.url(TEMPLATE))

    def fresh_database(self) -> str:
        """The URL of a new database holding the schema at head and no rows."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway cluster; stop it and delete its files afterwards."""
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/test installs it with apt-get)")
    root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8"]
    subprocess.run(_as_postgres_user(initdb), check=True, capture_output=True)
    port = _free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "300",
    }
    command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets)]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    server = subprocess.Popen(
        _as_postgres_user(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_up(port, server)
        pg = PostgresServer(port, user)
        pg.make_template()
        yield pg
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited at start (code {server.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            time.sleep(0.2)  # accepting connections: give it a moment to finish starting
            return
        time.sleep(0.1)
    raise RuntimeError("postgres did not start within 60 s")
