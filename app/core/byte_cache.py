"""A least-recently-used cache bounded by the bytes it holds as well as by its entries.

Workflow definitions may be as large as a body may be (``GATEWAY_MAX_UPLOAD_BYTES``, 50 MiB by
default), so a cache bounded only by count could hold gigabytes. Each entry is put with its
size (the length of its JSON); the oldest entries leave until the total fits, and an entry
larger than the whole budget is not kept at all (its caller uses it once).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Generic, TypeVar

__all__ = ["ByteBoundedCache", "json_size"]

K = TypeVar("K")
V = TypeVar("V")


def json_size(value: Any) -> int:
    """The length in bytes of ``value`` as compact ASCII JSON (its size where it came from)."""
    return len(json.dumps(value, separators=(",", ":"), default=str))


class ByteBoundedCache(Generic[K, V]):
    """At most ``max_entries`` entries and ``max_bytes`` bytes, the least recently used out first.

    Example:
        >>> cache: ByteBoundedCache[str, str] = ByteBoundedCache(max_entries=10, max_bytes=5)
        >>> cache.put("a", "aaa", size=3); cache.put("b", "bbb", size=3)
        >>> cache.get("a") is None, cache.get("b"), cache.total_bytes
        (True, 'bbb', 3)
    """

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.total_bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, *, size: int) -> None:
        """Keep ``value`` under ``key``, dropping the oldest entries until both bounds hold."""
        self.pop(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self.total_bytes += size
        while len(self._entries) > self.max_entries or self.total_bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.total_bytes -= dropped

    def pop(self, key: K) -> None:
        """Forget ``key`` if it is kept."""
        found = self._entries.pop(key, None)
        if found is not None:
            self.total_bytes -= found[1]
