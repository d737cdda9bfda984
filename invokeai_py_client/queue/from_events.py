"""A finished queue item rebuilt from its events, when they tell everything (pure).

A completed item's results are all in its ``invocation_complete`` events: each carries the
prepared node (``invocation``, with its fields), the id of the node that was sent
(``invocation_source_id``) and the ``result``. When every node of the graph that was sent has
completed, on one connection with no gap, and none of them multiplies at run time (``iterate``,
``collect``), those events are the item's session: reading the item back over HTTP would add
a round trip and nothing else. Otherwise (a reconnect or an overflow in between, a missing
node, iteration, a failure or a cancellation) the item is read as before.

The rebuilt item has what results are read from: ``session.results``,
``session.source_prepared_mapping`` and ``session.graph`` (the graph sent, its nodes' fields as
they ran, boards included), and the item's own fields from its terminal status event. What
only the server keeps (``execution_graph``, ``field_values``, the stored workflow) is absent:
``queue_repo.get_item(item_id)`` reads the whole item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import IvkJob, JobStatus

__all__ = ["ITERATING_NODE_TYPES", "CompletedNodes"]

# Nodes whose instances are made while the session runs: their count is unknown beforehand.
ITERATING_NODE_TYPES = frozenset({"iterate", "collect"})
# Keys of a status event that are not the item's: the event's own, the batch's and queue's.
_NOT_ITEM_FIELDS = frozenset({"event_type", "timestamp", "batch_status", "queue_status"})


def _without_nones(value: Any) -> Any:
    """The value as the server stores it in the session (its JSON leaves out null fields)."""
    if isinstance(value, Mapping):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


class CompletedNodes:
    """The ``invocation_complete`` events of one queue item, and whether they tell all."""

    def __init__(self, graph: Mapping[str, Any]) -> None:
        nodes = graph.get("nodes") or {}
        types = {str(node.get("type")) for node in nodes.values() if isinstance(node, Mapping)}
        self._graph = graph
        self.expected = frozenset(nodes)
        self.usable = bool(self.expected) and not types & ITERATING_NODE_TYPES
        self._results: dict[str, dict[str, Any]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}  # source id -> the node as it ran
        self._prepared: dict[str, list[str]] = {}  # source id -> prepared ids

    @classmethod
    def of_graph(cls, graph: Mapping[str, Any]) -> CompletedNodes:
        """For the graph sent (``batch.graph`` of an ``enqueue_batch`` body)."""
        return cls(graph)

    def add(self, payload: Mapping[str, Any]) -> None:
        """Take one ``invocation_complete`` payload of this item."""
        invocation = payload.get("invocation")
        source_id = payload.get("invocation_source_id")
        result = payload.get("result")
        if not (isinstance(invocation, Mapping) and isinstance(source_id, str)):
            self.usable = False  # an event of a shape this code does not know
            return
        prepared_id = str(invocation.get("id") or source_id)
        if prepared_id in self._results:
            return  # the same event seen twice (two watchers of one run)
        self._results[prepared_id] = _without_nones(result) if isinstance(result, Mapping) else {}
        self._nodes.setdefault(source_id, {**invocation, "id": source_id})
        self._prepared.setdefault(source_id, []).append(prepared_id)

    def gap(self) -> None:
        """Events may have been missed (a reconnect, an overflow): the item must be read."""
        self.usable = False

    @property
    def complete(self) -> bool:
        """Whether every node sent has completed, with nothing missed."""
        return self.usable and self.expected <= self._nodes.keys()

    def session(self, session_id: str) -> dict[str, Any]:
        """The item's ``session``, as far as results go: its ``graph`` is the graph sent (with
        its edges), each node's fields as they ran (a batch substitutes values per item)."""
        nodes = {}
        for node_id, sent in (self._graph.get("nodes") or {}).items():
            ran = self._nodes.get(node_id, {})
            nodes[node_id] = {**sent, **{k: ran[k] for k in sent if k in ran}}
        return {
            "id": session_id,
            "graph": {**self._graph, "nodes": nodes},
            "results": dict(self._results),
            "source_prepared_mapping": {s: list(p) for s, p in self._prepared.items()},
            "prepared_source_mapping": {p: s for s, ps in self._prepared.items() for p in ps},
        }

    def job(self, status_event: Mapping[str, Any]) -> IvkJob | None:
        """The completed item from its terminal status event, or None when the events do
        not tell everything (read the item instead)."""
        if not self.complete or status_event.get("status") != JobStatus.COMPLETED:
            return None
        fields = {k: v for k, v in status_event.items() if k not in _NOT_ITEM_FIELDS}
        fields["session"] = self.session(str(status_event.get("session_id") or ""))
        return IvkJob.model_validate(fields)
