"""Base for data read from the server: tolerant of fields and values a newer server adds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ._mapping import MappingAccess

__all__ = ["APIModel"]


class APIModel(MappingAccess, BaseModel):
    """A record from the server; unknown members are kept, not rejected.

    Read by attribute (typed) or by key (``job["status"]``, ``job.get("status")``).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())
