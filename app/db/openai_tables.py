"""The table of how a workflow is served by the OpenAI-compatible images API (``/v1``).

One row per workflow whose mapping was set explicitly (``PUT /workflows/{id}/openai``); a
workflow without a row is served by what is detected from its inputs. Roles point at an input
by node and field, not by index, so a new version of the workflow that moves indices keeps
its mapping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from app.db.tables import UTCDateTime, utcnow

__all__ = ["OpenAIMapping"]


class OpenAIMapping(SQLModel, table=True):
    """The explicit OpenAI mapping of one workflow.

    ``roles`` maps a role name (``prompt``, ``width``, ...) to ``{"node_id", "field_name"}``,
    or to None when the role is explicitly not served; a role not in it is detected.
    """

    workflow_id: str = Field(foreign_key="workflow.id", primary_key=True)
    exposed: bool = True
    roles: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
