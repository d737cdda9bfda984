"""One path segment of an InvokeAI URL, made from a caller's value (an image name, a board id).

``quote(value, safe="")`` escapes ``/``, but a value of ``.`` or ``..`` stays a dot segment,
which URL normalization (httpx's included) resolves: ``/images/i/../full`` would become
``/images/full``, another route. Such values are refused here, before anything is sent.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["segment"]


def segment(value: str) -> str:
    """``value`` quoted as one path segment.

    Raises:
        ValueError: ``value`` is empty, ``.`` or ``..`` (it would not stay one segment).

    Example:
        >>> segment("a b.png")
        'a%20b.png'
    """
    if value in ("", ".", ".."):
        raise ValueError(f"{value!r} cannot be used as an image name or id")
    return quote(value, safe="")
