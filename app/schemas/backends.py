"""What ``GET /backends`` answers: each InvokeAI server, its health, queue and models."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["BackendPublic", "BackendQueue", "BackendsPublic"]


class BackendQueue(BaseModel):
    """The server's own queue, as it reports it."""

    pending: int
    in_progress: int
    completed: int
    failed: int
    canceled: int


class BackendPublic(BaseModel):
    """One InvokeAI server the gateway sends runs to."""

    name: str = Field(description="What runs record as their backend.")
    url: str
    weight: int = Field(description="Its share of the runs, relative to the others.")
    healthy: bool = Field(description="Its events are followed: new runs may go there.")
    reachable: bool = Field(description="It answered a queue status request just now.")
    unfinished_runs: int = Field(description="This gateway's runs sent or being sent there.")
    queue: BackendQueue | None = Field(None, description="Null when it did not answer.")
    models: list[str] | None = Field(
        None, description="Installed models as 'name (base, type)'; null when it did not answer."
    )


class BackendsPublic(BaseModel):
    """Every InvokeAI server, in ``INVOKEAI_URL``'s order."""

    data: list[BackendPublic]
    count: int
