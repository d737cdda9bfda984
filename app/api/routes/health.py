"""Liveness and readiness probes (for Docker's healthcheck, Kubernetes, load balancers)."""

from __future__ import annotations

import asyncio
from typing import Literal

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.api.deps import clients_of, engine_of, settings_of
from app.core.caller import is_trusted_caller
from app.db.tables import RunEvent
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["Liveness", "Readiness", "router"]

router = APIRouter(tags=["health"])

# Each probe must answer well within a orchestrator's probe timeout (Docker's default is 30 s).
CHECK_TIMEOUT_SECONDS = 5.0

CheckState = Literal["ok", "down"]


class Liveness(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether the gateway can serve runs, and which dependency is down if not."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckState]
    down: list[str]
    details: dict[str, str] = {}


@router.get("/livez", response_model=Liveness)
async def livez() -> Liveness:
    """The process is up and answering (no dependency is checked)."""
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is down."}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when InvokeAI answers, its event stream is connected, and the database is writable
    (with several InvokeAI servers: when one of them does).

    Which check failed is shown to everyone; why (``details``) only to a caller with an API
    key (or to everyone when no keys are set: then only local programs are answered).
    """
    backends, database = await asyncio.gather(
        asyncio.gather(*(_check_backend(client) for client in clients_of(request))),
        _check_database(engine_of(request)),
    )
    # Ready when one server answers with its events followed: runs go to the healthy ones.
    invokeai, events = next((b for b in backends if b == (None, None)), _joined(backends))
    problems = {"invokeai": invokeai, "events": events, "database": database}
    body = readiness(problems)
    if not is_trusted_caller(request, settings_of(request)):
        body.details = {}  # internal URLs and database errors are for the operator only
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


def readiness(problems: dict[str, str | None]) -> Readiness:
    """The readiness body from each check's problem (None when the check passed)."""
    down = [name for name, problem in problems.items() if problem is not None]
    return Readiness(
        status="unavailable" if down else "ok",
        checks={name: ("down" if name in down else "ok") for name in problems},
        down=down,
        details={name: str(problems[name]) for name in down},
    )


async def _check_backend(client: InvokeAIClient) -> tuple[str | None, str | None]:
    invokeai = await _check_invokeai(client)
    # Without InvokeAI there is no event stream to connect to: do not start a connect attempt.
    events = await _check_events(client) if invokeai is None else "InvokeAI unreachable"
    return invokeai, events


def _joined(backends: list[tuple[str | None, str | None]]) -> tuple[str | None, str | None]:
    """Every server's problems, one per server (all are down)."""
    if len(backends) == 1:
        return backends[0]
    invokeai = [p for p, _ in backends if p is not None]
    events = [p for _, p in backends if p is not None]
    return ("; ".join(invokeai) or None), ("; ".join(events) or None)


async def _check_invokeai(client: InvokeAIClient) -> str | None:
    ok = await client.ahealth_check()
    return None if ok else f"no answer from {client.base_url}"


async def _check_events(client: InvokeAIClient) -> str | None:
    try:
        hub = await asyncio.wait_for(client.event_hub(), CHECK_TIMEOUT_SECONDS)
    except (InvokeAIError, TimeoutError) as exc:
        return f"cannot connect Socket.IO: {exc or type(exc).__name__}"
    return None if hub.connected else "Socket.IO is disconnected (reconnecting)"


async def _check_database(engine: Engine) -> str | None:
    try:
        await anyio.to_thread.run_sync(_probe_write, engine)
    except Exception as exc:  # any driver error means "not writable"
        return f"{type(exc).__name__}: {exc}"
    return None


def _probe_write(engine: Engine) -> None:
    # A write statement that matches no row, rolled back: SQLite still takes the write lock
    # for it (a read-only or locked database fails here), and nothing is left behind.
    # (DDL would not do: pysqlite commits DDL at once, outside our transaction.)
    with engine.connect() as conn, conn.begin() as tx:
        conn.execute(text(f"DELETE FROM {RunEvent.__tablename__} WHERE id < 0"))
        tx.rollback()
