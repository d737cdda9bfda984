"""Editor literals -> the server's API shapes (pure).

The editor stores some inputs differently from what the API accepts: a board picker writes
"auto" or "none", an empty image or model picker writes an object with an empty name or key.
Such literals are left out so the invocation's default applies, as InvokeAI's own
``workflow_graph_builder.py`` and web UI do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FieldValues", "editor_value_to_api"]

FieldValues = Mapping[tuple[str, str], Any]
"""``(node_id, field_name) -> value`` already in the server's API shape."""

_NO_BOARD = frozenset({"", "auto", "none"})


def editor_value_to_api(field_name: str, value: Any) -> tuple[bool, Any]:
    """Convert a literal from an editor file to the API's shape.

    Returns:
        ``(send, converted)``; ``send`` is false when the field must be left out so the
        server's default applies (empty image or model, board "auto"/"none", ``None``).
    """
    if value is None:
        return False, None
    if field_name == "board":
        return _board_value(value)
    if isinstance(value, dict):
        return _object_value(value)
    if isinstance(value, list):
        items = [_object_value(v) if isinstance(v, dict) else (True, v) for v in value]
        return True, [item for send, item in items if send]
    return True, value


def _board_value(value: Any) -> tuple[bool, Any]:
    # The editor's board picker stores "auto" / "none" (or a bare id); the API wants a
    # BoardField object or nothing (workflow_graph_builder.py drops the sentinels too).
    if isinstance(value, str):
        return (False, None) if value in _NO_BOARD else (True, {"board_id": value})
    if isinstance(value, Mapping):
        board_id = value.get("board_id")
        if isinstance(board_id, str) and board_id not in _NO_BOARD:
            return True, {"board_id": board_id}
    return False, None


def _object_value(value: dict[str, Any]) -> tuple[bool, Any]:
    if "image_name" in value:
        name = value.get("image_name")
        return (True, {"image_name": name}) if name else (False, None)
    if "key" in value and ("base" in value or "type" in value):
        # A model picker left empty still writes an identifier with an empty key.
        return (True, dict(value)) if value.get("key") else (False, None)
    return True, value
