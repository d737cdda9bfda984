"""Shapes of the ids and names a caller sends, checked before they reach InvokeAI or a row.

An image name or a board id becomes one segment of an InvokeAI URL: a value such as ``..``
would be resolved by URL normalization to another route, so names must not start with a dot.
InvokeAI's own names are UUIDs (``<uuid>.png`` for images), well inside these shapes.
"""

from __future__ import annotations

import re

__all__ = [
    "BOARD_ID_PATTERN",
    "ID_MAX_CHARS",
    "IMAGE_NAME_MAX_CHARS",
    "IMAGE_NAME_PATTERN",
    "MAX_URL_CHARS",
    "is_image_name",
]

IMAGE_NAME_MAX_CHARS = 255
IMAGE_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
ID_MAX_CHARS = 200
BOARD_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
# URLs a caller gives us (webhook targets): about what browsers and proxies handle everywhere.
MAX_URL_CHARS = 2048

_IMAGE_NAME = re.compile(IMAGE_NAME_PATTERN)


def is_image_name(value: str) -> bool:
    """Whether ``value`` has the shape of an image name (never ``.`` or ``..``)."""
    return len(value) <= IMAGE_NAME_MAX_CHARS and _IMAGE_NAME.match(value) is not None
