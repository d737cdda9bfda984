"""Read access by key on the client's typed results, for code written against plain dicts.

Results are typed objects (pydantic models, dataclasses) so that editors and mypy see their
attributes; many users' scripts index them as the JSON they mirror (``job["status"]``,
``out.get("image_names", [])``). ``MappingAccess`` gives both styles on one object: the keys
are the declared fields (and, on models that keep them, the members a newer server added);
methods and properties are not keys. It is a mixin only, not a ``collections.abc.Mapping``:
iterating a model still yields what pydantic yields, and ``isinstance(x, Mapping)`` stays
false, so code that tells JSON data from typed results keeps telling them apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import KeysView
from typing import Any

from pydantic import BaseModel

__all__ = ["MappingAccess"]


class MappingAccess:
    """``x["key"]``, ``x.get("key", default)``, ``"key" in x`` and ``x.keys()`` by field name."""

    __slots__ = ()

    def _key_names(self) -> dict[str, None]:
        if isinstance(self, BaseModel):
            names = dict.fromkeys(type(self).model_fields)
            names.update(dict.fromkeys(self.model_extra or {}))
            return names
        if dataclasses.is_dataclass(self):
            return dict.fromkeys(f.name for f in dataclasses.fields(self))
        raise TypeError(f"{type(self).__name__} is neither a pydantic model nor a dataclass")

    def keys(self) -> KeysView[str]:
        """The field names, in declaration order."""
        return self._key_names().keys()

    def __getitem__(self, key: str) -> Any:
        if key not in self._key_names():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The field's value, or ``default`` when there is no such field."""
        return getattr(self, key) if key in self._key_names() else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._key_names()
