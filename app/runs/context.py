"""What every collaborator of a run's life shares, in one typed record."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Engine

from app.core.config import Settings
from app.db.claims import owned_by
from app.db.thread import DatabaseThread
from app.runs.registry import InFlight
from app.runs.transition import Transitions
from app.streaming.previews import PreviewHub
from invokeai_py_client import InvokeAIClient

__all__ = ["RunContext"]


@dataclass(frozen=True)
class RunContext:
    """Where runs are stored (``engine``, used on ``db``'s thread), the InvokeAI they run on
    (``client``, recorded as ``backend``; ``first``: the first one listed, which also owns
    runs recorded without a backend), the registry of its runs in flight, the one way to
    change a run (``transitions``), and where live-only previews go (``previews``)."""

    engine: Engine
    db: DatabaseThread
    client: InvokeAIClient
    transitions: Transitions
    registry: InFlight
    settings: Settings
    previews: PreviewHub
    backend: str = ""
    first: bool = True
    clients: tuple[InvokeAIClient, ...] = ()  # every server's, this one's included

    @property
    def others(self) -> list[InvokeAIClient]:
        """The other servers' clients (a model key of theirs names a model here too)."""
        return [client for client in self.clients if client is not self.client]

    @property
    def owner(self) -> ColumnElement[bool]:
        """Which stored runs are this backend's (a filter for run queries)."""
        return owned_by(self.backend, first=self.first)
