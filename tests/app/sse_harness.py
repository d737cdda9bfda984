"""A small gateway for SSE tests: the real event routes, a temporary SQLite, our broker.

``Harness.emit`` does what the run service does for every relayed event: store a
``RunEvent`` row, then publish it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from app.api.routes import events as events_routes
from app.core.config import Settings
from app.core.errors import install_handlers
from app.db.engine import make_engine
from app.db.outbox import StoredEvent
from app.db.tables import Run, RunEvent, Workflow
from app.main import GatewayAPI
from app.streaming.broker import InMemoryEventBroker
from tests.app.live_server import serve


@dataclass
class Harness:
    url: str
    engine: Engine
    broker: InMemoryEventBroker

    def add_run(self, run_id: str, workflow_id: str = "wf-1", status: str = "queued") -> None:
        with Session(self.engine) as session:
            if session.get(Workflow, workflow_id) is None:
                session.add(Workflow(id=workflow_id, name="t", definition={}, inputs=[]))
                session.commit()  # no relationship: the unit of work would not order the inserts
            session.add(
                Run(
                    id=run_id, workflow_id=workflow_id, workflow_version=1, inputs={}, status=status
                )
            )
            session.commit()

    def set_status(self, run_id: str, status: str) -> None:
        with Session(self.engine) as session:
            run = session.get(Run, run_id)
            assert run is not None
            run.status = status
            session.add(run)
            session.commit()

    def store(self, run_id: str, event_type: str, data: dict[str, Any] | None = None) -> int:
        with Session(self.engine) as session:
            run = session.get(Run, run_id)
            assert run is not None
            row = RunEvent(
                run_id=run_id, workflow_id=run.workflow_id, event_type=event_type, data=data or {}
            )
            session.add(row)
            session.commit()
            session.refresh(row)
            self._last_row = row
            assert row.id is not None
            return row.id

    async def emit(self, run_id: str, event_type: str, data: dict[str, Any] | None = None) -> int:
        event_id = self.store(run_id, event_type, data)
        row = self._last_row
        assert row.id is not None
        stored = StoredEvent(
            row.id, row.run_id, row.workflow_id, row.event_type, row.data, row.created_at
        )
        await self.broker.publish(stored.as_event())
        return event_id


def build_app(tmp_path: Path, *, ping: float, queue_size: int) -> FastAPI:
    settings = Settings(data_dir=tmp_path, sse_ping_seconds=ping)
    engine = make_engine(settings.database_url)
    SQLModel.metadata.create_all(engine)
    app = GatewayAPI()  # keeps the server's send: streams write straight to the socket
    install_handlers(app)
    app.include_router(events_routes.router)
    app.state.settings = settings
    app.state.engine = engine
    app.state.broker = InMemoryEventBroker(queue_size=queue_size)
    return app


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, *, ping: float = 15.0, queue_size: int = 256
) -> AsyncIterator[Harness]:
    app = build_app(tmp_path, ping=ping, queue_size=queue_size)
    async with serve(app) as url:
        yield Harness(url=url, engine=app.state.engine, broker=app.state.broker)
    await app.state.broker.close()
    app.state.engine.dispose()
