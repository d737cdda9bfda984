"""Input index maps: record which input sits at which index, and notice when that changes.

Callers address inputs by index, so editing a workflow's form in the editor can silently
point index 3 at another field. An exported map keys every input by ``node_id`` and
``field_name`` (stable across edits); comparing it with the current inputs reports the ones
that moved, vanished or appeared. Pure functions over plain data; no I/O except the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "INDEX_MAP_VERSION",
    "IndexMapEntry",
    "IndexMapReport",
    "MovedInput",
    "compare_index_maps",
    "read_index_map",
    "write_index_map",
]

INDEX_MAP_VERSION = 1


@dataclass(frozen=True)
class IndexMapEntry:
    """One input as recorded in a map."""

    index: int
    node_id: str
    field_name: str
    label: str = ""
    node_type: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.field_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "node_id": self.node_id,
            "field_name": self.field_name,
            "label": self.label,
            "node_type": self.node_type,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexMapEntry:
        return cls(
            index=int(data["index"]),
            node_id=str(data["node_id"]),
            field_name=str(data["field_name"]),
            label=str(data.get("label") or ""),
            node_type=str(data.get("node_type") or ""),
        )


@dataclass(frozen=True)
class MovedInput:
    """An input still present, at another index."""

    node_id: str
    field_name: str
    label: str
    old_index: int
    new_index: int


@dataclass
class IndexMapReport:
    """How the current inputs differ from a recorded map."""

    moved: list[MovedInput] = field(default_factory=list)
    vanished: list[IndexMapEntry] = field(default_factory=list)
    appeared: list[IndexMapEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every input is where the map says, and no input is new."""
        return not (self.moved or self.vanished or self.appeared)

    def describe(self) -> list[str]:
        """One readable line per difference."""
        lines = [
            f"input '{m.label}' (node {m.node_id}, field {m.field_name}) moved from index "
            f"{m.old_index} to {m.new_index}"
            for m in self.moved
        ]
        lines += [
            f"input {e.index} '{e.label}' (node {e.node_id}, field {e.field_name}) vanished"
            for e in self.vanished
        ]
        lines += [
            f"input {e.index} '{e.label}' (node {e.node_id}, field {e.field_name}) appeared"
            for e in self.appeared
        ]
        return lines


def compare_index_maps(
    recorded: Iterable[IndexMapEntry], current: Iterable[IndexMapEntry]
) -> IndexMapReport:
    """Compare a recorded map with the current inputs, keyed by (node_id, field_name)."""
    old = {e.key: e for e in recorded}
    new = {e.key: e for e in current}
    report = IndexMapReport()
    for key, entry in new.items():
        before = old.get(key)
        if before is None:
            report.appeared.append(entry)
        elif before.index != entry.index:
            report.moved.append(
                MovedInput(entry.node_id, entry.field_name, entry.label, before.index, entry.index)
            )
    report.vanished = [e for key, e in old.items() if key not in new]
    return report


def write_index_map(
    path: str | Path, entries: Iterable[IndexMapEntry], *, workflow_name: str = ""
) -> Path:
    """Write a map as JSON; returns the path."""
    target = Path(path)
    doc = {
        "version": INDEX_MAP_VERSION,
        "workflow": workflow_name,
        "inputs": [e.to_dict() for e in entries],
    }
    target.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return target


def read_index_map(path: str | Path) -> list[IndexMapEntry]:
    """Read a map written by ``write_index_map``.

    Raises:
        ValueError: the file is not an index map.
    """
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise ValueError(f"{path} is not an input index map (no 'inputs' list)")
    return [IndexMapEntry.from_dict(item) for item in doc["inputs"]]
