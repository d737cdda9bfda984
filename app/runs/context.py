"""What every collaborator of a run's life shares, in one typed record."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from app.core.config import Settings
from app.db.thread import DatabaseThread
from app.runs.registry import InFlight
from app.runs.transition import Transitions
from app.streaming.previews import PreviewHub
from invokeai_py_client import InvokeAIClient

__all__ = ["RunContext"]


@dataclass(frozen=True)
class RunContext:
    """Where runs are stored (``engine``, used on ``db``'s thread), the InvokeAI they run on,
    the registry of runs in flight, the one way to change a run (``transitions``), and where
    live-only previews go (``previews``)."""

    engine: Engine
    db: DatabaseThread
    client: InvokeAIClient
    transitions: Transitions
    registry: InFlight
    settings: Settings
    previews: PreviewHub
