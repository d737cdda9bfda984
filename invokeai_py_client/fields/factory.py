"""Make the typed field for one workflow input, from the server's spec or, failing that, the file.

With a spec (the normal case: the server's schema is loaded) the kind, bounds, choices and
default come from the server, and the file's value (the editor's shape) is converted into the
field. Without a server the kind is guessed from the file's value alone, by these rules:

========================================  =====================================================
file value                                kind
========================================  =====================================================
``True`` / ``False``                      boolean
an ``int``                                integer (a float input saved as ``7`` looks like one:
                                          this is why the schema is preferred)
a ``float``                               float
a string, field named ``board``           board (``"auto"``, ``"none"`` or an id)
a string, field named ``scheduler``       scheduler, when it is a known scheduler name
any other string                          string
``{"image_name"}``                        image
``{"board_id"}``                          board
``{"latents_name"}`` / ``{"tensor_name"}`` latents / tensor
``{"r", "g", "b"}``                       color
``{"x_min", "x_max", "y_min", "y_max"}``  bounding_box
``{"unet", "scheduler"}``                 unet
``{"tokenizer", "text_encoder"}``         clip
``{"transformer"}``                       transformer
``{"lora", "weight"}``                    lora
``{"key"/"name", "base", "type"}``        model
a list                                    collection of the kind its items share (else any)
anything else, or no value                any (sent as it is)
========================================  =====================================================

A file value that does not fit the field (a stale literal under an edge, a model reference
without a key) leaves the field unset instead of failing the whole workflow; the raw value stays
readable as ``field.file_value``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ..exceptions import InputValidationError
from .base import IvkField
from .kinds import SchedulerName, field_class_for
from .schema import FieldSpec

__all__ = ["guess_kind", "make_field"]

_SCHEDULERS = frozenset(s.value for s in SchedulerName)

# Dict keys that identify a struct kind, most specific first.
_DICT_SIGNATURES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"image_name"}), "image"),
    (frozenset({"board_id"}), "board"),
    (frozenset({"latents_name"}), "latents"),
    (frozenset({"tensor_name"}), "tensor"),
    (frozenset({"r", "g", "b"}), "color"),
    (frozenset({"x_min", "x_max", "y_min", "y_max"}), "bounding_box"),
    (frozenset({"unet", "scheduler"}), "unet"),
    (frozenset({"tokenizer", "text_encoder"}), "clip"),
    (frozenset({"transformer"}), "transformer"),
    (frozenset({"lora", "weight"}), "lora"),
    (frozenset({"key", "base", "type"}), "model"),
    (frozenset({"name", "base", "type"}), "model"),
    (frozenset({"model_name", "base_model"}), "model"),
)


def _guess_scalar(value: Any, field_name: str | None) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        if field_name == "board":
            return "board"
        if field_name == "scheduler" and value in _SCHEDULERS:
            return "scheduler"
        return "string"
    return "any"


def _guess_dict(value: Mapping[str, Any]) -> str:
    keys = frozenset(value)
    return next((kind for sig, kind in _DICT_SIGNATURES if sig <= keys), "any")


def guess_kind(value: Any, field_name: str | None = None) -> tuple[str, str | None]:
    """``(kind, item_kind)`` guessed from a file value (see the module docstring for the rules)."""
    if isinstance(value, Mapping):
        return _guess_dict(value), None
    if isinstance(value, list | tuple):
        kinds = {guess_kind(item)[0] for item in value if item is not None}
        item_kind = kinds.pop() if len(kinds) == 1 else "any"
        return "collection", "any" if item_kind == "collection" else item_kind
    return _guess_scalar(value, field_name), None


def make_field(
    spec: FieldSpec | None, file_value: Any, *, field_name: str | None = None
) -> IvkField[Any]:
    """The typed field for one input, holding the file's value converted to the field's type.

    Args:
        spec: the server's spec of the input, or None when no server schema is available.
        file_value: the ``value`` the workflow file holds for the input (None if absent).
        field_name: the input's name, used to guess better without a spec.

    Returns:
        A field of the class for the spec's kind (``IvkAnyField`` for untyped kinds).
    """
    if spec is not None:
        field = field_class_for(spec.kind).from_spec(spec)
    else:
        kind, item_kind = guess_kind(file_value, field_name)
        field = field_class_for(kind)(kind=kind, item_kind=item_kind, name=field_name or "")
    field._set_private(_file_value=file_value)
    if file_value is not None:
        with contextlib.suppress(InputValidationError):
            field.value = file_value
    return field
