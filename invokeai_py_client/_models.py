"""Base for data read from the server: tolerant of fields and values a newer server adds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["APIModel"]


class APIModel(BaseModel):
    """A record from the server; unknown members are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())
