"""The application factory: ``create_app(settings)`` and the lifespan that owns resources.

Nothing is created at import time. The lifespan migrates the database, opens the InvokeAI
client (used async), the event broker and the run service, and puts them on ``app.state``;
the dependencies in ``app.api.deps`` read them from there. InvokeAI may be down: the service
starts anyway and the run service keeps trying to reach it in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app._version import gateway_version
from app.api.router import api_router
from app.console import mount_console
from app.core.config import Settings, get_settings
from app.core.errors import install_handlers
from app.core.logging_json import install_json_logging
from app.core.request_guard import install_request_guards
from app.core.security import check_bind, install_security
from app.db.engine import checkpoint_forever, make_engine, run_migrations
from app.db.thread import DatabaseThread
from app.metrics.route import install_metrics, start_metrics
from app.runs.service import RunService
from app.streaming.broker import InMemoryEventBroker
from app.streaming.wire import keep_server_send
from app.webhooks.worker import WebhookWorker
from invokeai_py_client import InvokeAIClient

__all__ = ["create_app"]

DESCRIPTION = """\
A small REST gateway in front of an InvokeAI server: register editor-exported workflow files,
run them by sending only the values that change (keyed by input index), follow runs live over
Server-Sent Events, and find every run in a durable history. Errors are
`application/problem+json`.
"""


class GatewayAPI(FastAPI):
    """The FastAPI application, keeping the server's own ``send`` for event streams' direct
    writes (``app.streaming.wire``) before any middleware wraps it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keep_server_send(scope, send)
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the gateway application for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    check_bind(settings)  # before anything binds: no open, unauthenticated network port

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_data_dir()
        if settings.migrate_on_start:
            run_migrations(settings.database_url)
        engine = make_engine(settings.database_url)
        backends = [(spec, _invokeai_client(settings, spec.url)) for spec in settings.backends]
        clients = [client for _, client in backends]
        broker = InMemoryEventBroker()
        db = DatabaseThread()
        run_service = RunService(
            engine=engine, db=db, backends=backends, broker=broker, settings=settings
        )
        app.state.settings = settings
        app.state.engine = engine
        app.state.client = clients[0]  # images uploaded, boards and models: the first server
        app.state.clients = clients
        app.state.broker = broker
        app.state.run_service = run_service
        run_timings = await start_metrics(app, engine, broker)
        await run_service.start()
        webhook_worker = WebhookWorker(engine=engine, db=db, settings=settings)
        app.state.webhook_worker = webhook_worker
        await webhook_worker.start()
        checkpointer = asyncio.create_task(checkpoint_forever(engine), name="gateway-wal")
        # Everything made so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise pause every SSE stream at once.
        gc.freeze()
        try:
            yield
        finally:
            checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpointer
            await run_service.stop()
            await run_timings.stop()
            await webhook_worker.stop()
            await broker.close()
            await asyncio.gather(*(client.aclose() for client in clients))
            db.close()
            engine.dispose()

    app = GatewayAPI(
        title="InvokeAI gateway",
        version=gateway_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_handlers(app)
    install_request_guards(app, settings)
    install_security(app, settings)
    install_json_logging(app, settings)  # GATEWAY_LOG_FORMAT=json
    install_metrics(app)  # outermost: counts every answer, the key check's 401s too
    app.include_router(api_router)
    mount_console(app)  # the web console at /ui
    return app


def _invokeai_client(settings: Settings, url: str) -> InvokeAIClient:
    # Multi-user InvokeAI: the client logs in lazily, again after a 401, and hands the token
    # to the Socket.IO handshake, so the run events keep coming. Every server is logged in
    # to with the same account.
    password = settings.invokeai_password
    return InvokeAIClient.from_url(
        url,
        username=settings.invokeai_username,
        password=password.get_secret_value() if password is not None else None,
    )
