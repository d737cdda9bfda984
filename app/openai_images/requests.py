"""The parameters of ``POST /v1/images/generations`` and ``/v1/images/edits``, checked.

Parameters OpenAI defines that a workflow has no use for (``quality``, ``style``, ``user``,
...) are accepted and ignored, so SDKs and chat front-ends that send them still work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.openai_images.errors import OpenAIError

__all__ = ["MAX_IMAGES", "MAX_SIDE", "ImageRequest", "Size", "parse_request", "parse_size"]

# Runs one request may start; OpenAI's own limit for ``n``.
MAX_IMAGES = 10
# Pixels per side: beyond it a size is refused before InvokeAI tries to allocate the image.
MAX_SIDE = 8192
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")


class ImageRequest(BaseModel):
    """What both image routes take (the edit's image comes as a file beside these)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    prompt: str
    negative_prompt: str | None = None
    n: int = Field(default=1, ge=1, le=MAX_IMAGES)
    size: str | None = None
    seed: int | None = Field(default=None, ge=0)
    # The default is b64_json, as for OpenAI's newer image models: the data comes back in
    # the answer, with no second request (which would need the API key too).
    response_format: Literal["b64_json", "url"] | None = None


@dataclass(frozen=True)
class Size:
    width: int
    height: int


def parse_size(size: str | None) -> Size | None:
    """``"WxH"`` as a size; None for no size or ``"auto"`` (the workflow's own).

    Raises:
        OpenAIError: 400 naming ``size`` when it is neither.
    """
    if size is None or size.strip().lower() == "auto":
        return None
    match = _SIZE.match(size)
    sides = (int(match[1]), int(match[2])) if match is not None else (0, 0)
    if not all(0 < side <= MAX_SIDE for side in sides):
        raise OpenAIError(
            f"size {size!r} is not WIDTHxHEIGHT in pixels (for example '512x512', each side "
            f"1 to {MAX_SIDE}) or 'auto'",
            param="size",
            code="invalid_size",
        )
    return Size(*sides)


def parse_request(raw: Any) -> ImageRequest:
    """The checked parameters; a 400 naming the first bad one otherwise."""
    if not isinstance(raw, dict):
        raise OpenAIError("the body must be a JSON object", code="invalid_body")
    try:
        return ImageRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise OpenAIError(f"{param}: {first['msg']}", param=param, code="invalid_value") from exc
