"""A sweep's runs: the combinations of its varied inputs, and one InvokeAI batch for them (pure).

A sweep varies some inputs over lists of values. ``product`` takes every combination (the first
index varies slowest, like nested loops in the order given), ``zip`` the i-th value of each list
together. Each combination is one run.

All the runs go to InvokeAI as one batch when its ``data`` can carry what differs between them:
one zipped list of ``BatchDatum`` (one per varied field, its items in run order), which InvokeAI
expands into one queue item per run, in that order, in one transaction. It cannot when a varied
value is not a string, a number or an image (a model, a board, a list, a colour, a boolean), or
when a value changes more than the field itself (an input feeding several fields); those sweeps
are sent as one batch per run, in order.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["Mode", "Target", "expand", "one_batch_body", "size_of"]

Mode = Literal["product", "zip"]
Target = tuple[str, str]  # (node id, field name) an input sets


def size_of(vary: dict[str, list[Any]], mode: Mode) -> int:
    """How many runs ``vary`` makes (zip: lists of unequal length are the caller's 422)."""
    lengths = [len(values) for values in vary.values()]
    if not lengths:
        return 0
    return math.prod(lengths) if mode == "product" else min(lengths)


def expand(vary: dict[str, list[Any]], mode: Mode) -> list[dict[str, Any]]:
    """The varied values of each run, in run order."""
    keys = list(vary)
    lists = [vary[key] for key in keys]
    combos = itertools.product(*lists) if mode == "product" else zip(*lists, strict=True)
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def one_batch_body(
    bodies: Sequence[dict[str, Any]], targets: Sequence[Target]
) -> dict[str, Any] | None:
    """One ``enqueue_batch`` body that runs every body's graph in order, or None.

    ``bodies`` are the runs' own bodies (same batch id), ``targets`` the fields the varied
    inputs set. None when InvokeAI's batch data cannot express the differences.
    """
    first = bodies[0]
    if first["batch"].get("data"):
        return None  # the workflow's own batch nodes already multiply each run
    datums = []
    for node_id, field in targets:
        items = [_field(body, node_id, field) for body in bodies]
        if not _batchable(items):
            return None
        datums.append({"node_path": node_id, "field_name": field, "items": _numbers_alike(items)})
    shared = _without_targets(first, targets)
    if any(_without_targets(body, targets) != shared for body in bodies[1:]):
        return None
    combined = copy.deepcopy(first)
    combined["batch"]["data"] = [datums]
    return combined


def _field(body: dict[str, Any], node_id: str, field: str) -> Any:
    node = body["batch"]["graph"]["nodes"].get(node_id)
    return None if node is None else node.get(field)


def _batchable(items: list[Any]) -> bool:
    """Whether InvokeAI's ``BatchDatum`` takes these items (one kind: text, number or image)."""
    if all(isinstance(i, int | float) and not isinstance(i, bool) for i in items):
        return True
    if all(isinstance(i, str) for i in items):
        return True
    return all(isinstance(i, dict) and set(i) == {"image_name"} for i in items)


def _numbers_alike(items: list[Any]) -> list[Any]:
    """Ints among floats become floats: the field is a float one, and the values stay equal."""
    if any(isinstance(i, float) for i in items) and all(isinstance(i, int | float) for i in items):
        return [float(i) for i in items]
    return items


def _without_targets(body: dict[str, Any], targets: Sequence[Target]) -> dict[str, Any]:
    """The graph with the varied fields and its random id taken out (the embedded workflow is
    not compared: it holds the values for the record, as in InvokeAI's own batches)."""
    graph: dict[str, Any] = copy.deepcopy(body["batch"]["graph"])
    graph.pop("id", None)
    for node_id, field in targets:
        graph["nodes"].get(node_id, {}).pop(field, None)
    return graph
