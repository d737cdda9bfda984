"""``invokeai-gateway serve | migrate`` (also ``python -m app``), and the client commands
``workflows``, ``run`` and ``runs`` that drive a gateway over HTTP (``app.remote_cli``).

Every flag of ``serve`` has an environment twin (``INVOKEAI_URL``, ``GATEWAY_*``); a flag given
on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from app.remote_cli import add_client_commands, run_client_command

if TYPE_CHECKING:  # the client commands run without the gateway's own dependencies
    from app.core.config import Settings

__all__ = ["build_parser", "main", "settings_from_args"]

# flag -> Settings field
SERVE_FLAGS: dict[str, tuple[str, type, str]] = {
    "--invokeai-url": (
        "invokeai_url",
        str,
        "InvokeAI base URL, or several: [name=]URL[;weight=N],... [INVOKEAI_URL]",
    ),
    "--database-url": ("database_url", str, "database URL [GATEWAY_DATABASE_URL]"),
    "--data-dir": ("data_dir", str, "folder of the default SQLite file [GATEWAY_DATA_DIR]"),
    "--host": ("host", str, "address to bind [GATEWAY_HOST]"),
    "--port": ("port", int, "port to bind [GATEWAY_PORT]"),
    "--max-upload-bytes": ("max_upload_bytes", int, "largest body [GATEWAY_MAX_UPLOAD_BYTES]"),
    "--cors-origins": (
        "cors_origins",
        str,
        "comma-separated origins allowed by CORS [GATEWAY_CORS_ORIGINS]",
    ),
    "--max-unfinished-runs": (
        "max_unfinished_runs",
        int,
        "cap on runs not yet finished; past it 429 [GATEWAY_MAX_UNFINISHED_RUNS]",
    ),
    "--max-batch-runs": (
        "max_batch_runs",
        int,
        "runs one POST /workflows/{id}/batches may make; past it 422 [GATEWAY_MAX_BATCH_RUNS]",
    ),
    "--idempotency-ttl": (
        "idempotency_ttl_seconds",
        float,
        "seconds an Idempotency-Key is remembered [GATEWAY_IDEMPOTENCY_TTL]",
    ),
    "--sse-ping": ("sse_ping_seconds", float, "SSE heartbeat interval [GATEWAY_SSE_PING]"),
    "--log-format": ("log_format", str, "text or json (one JSON line each) [GATEWAY_LOG_FORMAT]"),
    # API keys, passwords and webhook secrets stay environment-only: a flag would show them
    # in the process list.
}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for flag, (dest, kind, help_text) in SERVE_FLAGS.items():
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="invokeai-gateway", description="REST gateway in front of InvokeAI."
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="migrate the database, then serve the API")
    _add_settings_flags(serve)
    serve.add_argument("--log-level", default="info", help="uvicorn log level")
    migrate = commands.add_parser("migrate", help="upgrade the database schema to the newest")
    _add_settings_flags(migrate)
    add_client_commands(commands)
    return parser


def redacted(url: str) -> str:
    """A database URL fit for a log: its password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<a database URL that does not parse>"


def _refuse_password_flag(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    url = getattr(args, "database_url", None)
    if not url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    with contextlib.suppress(ArgumentError):
        if url and make_url(url).password:
            parser.error(
                "--database-url carries a password, which the process list would show to "
                "every user of this machine: set GATEWAY_DATABASE_URL instead"
            )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    from app.core.config import Settings

    overrides: dict[str, Any] = {
        dest: getattr(args, dest)
        for dest, _kind, _help in SERVE_FLAGS.values()
        if getattr(args, dest, None) is not None
    }
    return Settings(**overrides)


# Modules that the gateway's libraries import for features the gateway never uses, 180 of the
# process's 1,200 modules: httpx's command line (click's colours, rich, pygments), the HTTP
# and WebSocket libraries of engineio's thread-based client (the gateway uses the asyncio one,
# over aiohttp), and uvicorn's file watcher for --reload. Each library imports them inside
# ``try: ... except ImportError``, so marking them absent is what it already handles.
# Measured with ``benchmarks.cold_start_only``.
UNUSED_BY_SERVE = ("httpx._main", "requests", "websocket", "watchfiles")


def _start_serve_process() -> None:
    """Before the gateway's imports: mark ``UNUSED_BY_SERVE`` absent (``None`` in
    ``sys.modules`` makes ``import`` raise ``ImportError``; only modules not imported yet),
    about 8 MB and 50 ms less, and pause the garbage collector until the application is
    built (``_serve``): its passes over the 200,000 objects that importing makes took 100 ms
    of a one-second start and found 2,400 to free. Only in a ``serve`` process, whose code is
    all the gateway's own."""
    gc.disable()
    for name in UNUSED_BY_SERVE:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _serve(settings: Settings, log_level: str) -> None:
    import uvicorn

    from app.main import create_app

    # JSON logs: the gateway's own request lines replace uvicorn's access log and format.
    json_logs: dict[str, Any] = {}
    if settings.log_format == "json":
        json_logs = {"log_config": None, "access_log": False}
    app = create_app(settings)
    gc.freeze()  # what the imports made lives as long as the process: no pass looks at it again
    gc.enable()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        ws="none",  # no WebSocket routes: the upgrade is refused, its protocol never imported
        timeout_graceful_shutdown=5,
        **json_logs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; ``serve`` when no command is given."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve"])
    _refuse_password_flag(parser, args)
    if getattr(args, "client_handler", None) is not None:
        return run_client_command(args)
    command = args.command
    if command == "serve":
        _start_serve_process()
    settings = settings_from_args(args)
    if command == "migrate":
        from app.db.engine import run_migrations

        logging.basicConfig(level=logging.INFO)
        settings.ensure_data_dir()
        run_migrations(settings.database_url)
        logging.getLogger(__name__).info("database at head: %s", redacted(settings.database_url))
        return 0
    _serve(settings, args.log_level)
    return 0
