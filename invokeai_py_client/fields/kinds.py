"""The concrete field kinds, and the table from a schema kind to its field class.

Scalars are strict where a silent conversion would change the meaning: an integer refuses
``7.5`` and ``True``, a float takes ``7`` and stores ``7.0``, a string refuses numbers, an enum
refuses anything outside its choices and lists them.
"""

from __future__ import annotations

import enum
import math
from typing import Any

from ..exceptions import InputValidationError
from .base import IvkField, check_length, describe
from .structs import (
    IvkBoardField,
    IvkBoundingBoxField,
    IvkCLIPField,
    IvkColorField,
    IvkImageField,
    IvkLatentsField,
    IvkLoRAField,
    IvkModelIdentifierField,
    IvkTensorField,
    IvkTransformerField,
    IvkUNetField,
)

__all__ = [
    "FIELD_CLASSES",
    "IvkAnyField",
    "IvkBoardField",
    "IvkBooleanField",
    "IvkBoundingBoxField",
    "IvkCLIPField",
    "IvkCollectionField",
    "IvkColorField",
    "IvkEnumField",
    "IvkFloatField",
    "IvkImageField",
    "IvkIntegerField",
    "IvkLatentsField",
    "IvkLoRAField",
    "IvkModelIdentifierField",
    "IvkSchedulerField",
    "IvkStringField",
    "IvkTensorField",
    "IvkTransformerField",
    "IvkUNetField",
    "SchedulerName",
    "field_class_for",
]


class SchedulerName(enum.StrEnum):
    """The schedulers of InvokeAI 6.14.2 (``SCHEDULER_NAME_VALUES``); a server's own list, read
    from its schema, takes precedence on a field made from that schema."""

    DDIM = "ddim"
    DDPM = "ddpm"
    DEIS = "deis"
    DEIS_K = "deis_k"
    LMS = "lms"
    LMS_K = "lms_k"
    PNDM = "pndm"
    HEUN = "heun"
    HEUN_K = "heun_k"
    EULER = "euler"
    EULER_K = "euler_k"
    EULER_A = "euler_a"
    KDPM_2 = "kdpm_2"
    KDPM_2_K = "kdpm_2_k"
    KDPM_2_A = "kdpm_2_a"
    KDPM_2_A_K = "kdpm_2_a_k"
    DPMPP_2S = "dpmpp_2s"
    DPMPP_2S_K = "dpmpp_2s_k"
    DPMPP_2M = "dpmpp_2m"
    DPMPP_2M_K = "dpmpp_2m_k"
    DPMPP_2M_SDE = "dpmpp_2m_sde"
    DPMPP_2M_SDE_K = "dpmpp_2m_sde_k"
    DPMPP_3M = "dpmpp_3m"
    DPMPP_3M_K = "dpmpp_3m_k"
    DPMPP_SDE = "dpmpp_sde"
    DPMPP_SDE_K = "dpmpp_sde_k"
    ER_SDE = "er_sde"
    UNIPC = "unipc"
    UNIPC_K = "unipc_k"
    LCM = "lcm"
    TCD = "tcd"


class IvkStringField(IvkField[str]):
    """Text."""

    kind: str = "string"

    def _coerce(self, v: Any) -> str:
        if not isinstance(v, str):
            raise TypeError(f"expected a string, got {describe(v)}")
        return v


class IvkIntegerField(IvkField[int]):
    """A whole number; ``7.0`` is taken as 7, ``7.5`` and booleans are refused."""

    kind: str = "integer"

    def _coerce(self, v: Any) -> int:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"expected an integer, got {describe(v)}")
        return v


class IvkFloatField(IvkField[float]):
    """A number, stored as float (``7`` becomes ``7.0``); booleans, NaN and infinities refused."""

    kind: str = "float"

    def _coerce(self, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"expected a number, got {describe(v)}")
        if not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {v}")
        return float(v)


class IvkBooleanField(IvkField[bool]):
    """True or False (not 0/1, not "true")."""

    kind: str = "boolean"

    def _coerce(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise TypeError(f"expected True or False, got {describe(v)}")
        return v


class IvkEnumField(IvkField[Any]):
    """One of a fixed set of literals (``choices``); Python enum members give their value."""

    kind: str = "enum"

    def _coerce(self, v: Any) -> Any:
        if isinstance(v, enum.Enum):
            v = v.value
        if not isinstance(v, str | int | float | bool):
            raise TypeError(f"expected one of the choices, got {describe(v)}")
        return v


class IvkSchedulerField(IvkEnumField):
    """A scheduler name; takes a ``SchedulerName`` or its string."""

    kind: str = "scheduler"
    choices: tuple[Any, ...] | None = tuple(s.value for s in SchedulerName)


class IvkAnyField(IvkField[Any]):
    """A value the client does not type (connection-only structs, ``any`` inputs): sent as is."""

    kind: str = "any"


class IvkCollectionField(IvkField[list[Any]]):
    """A list whose items are checked as ``item_kind`` (``choices`` apply to each item)."""

    kind: str = "collection"

    def _item_field(self) -> IvkField[Any]:
        cls = field_class_for(self.item_kind or "any")
        if cls is IvkCollectionField:
            cls = IvkAnyField
        return cls(kind=self.item_kind or "any", choices=self.choices)

    def _coerce(self, v: Any) -> list[Any]:
        if not isinstance(v, list | tuple):
            raise TypeError(f"expected a list, got {describe(v)}")
        item_field = self._item_field()
        items = []
        for i, item in enumerate(v):
            try:
                items.append(item_field.validate_value(item))
            except InputValidationError as exc:
                raise ValueError(f"item {i}: {exc.reason}") from None
        return items

    def _check_constraints(self, v: Any) -> None:
        # Choices were checked per item; only the list's length is left.
        check_length(self, v)

    def _api_one(self, v: Any) -> Any:
        item_field = self._item_field()
        return [item_field._api_one(item) for item in v]


FIELD_CLASSES: dict[str, type[IvkField[Any]]] = {
    "string": IvkStringField,
    "integer": IvkIntegerField,
    "float": IvkFloatField,
    "boolean": IvkBooleanField,
    "enum": IvkEnumField,
    "scheduler": IvkSchedulerField,
    "image": IvkImageField,
    "board": IvkBoardField,
    "latents": IvkLatentsField,
    "tensor": IvkTensorField,
    "model": IvkModelIdentifierField,
    "unet": IvkUNetField,
    "clip": IvkCLIPField,
    "transformer": IvkTransformerField,
    "lora": IvkLoRAField,
    "color": IvkColorField,
    "bounding_box": IvkBoundingBoxField,
    "collection": IvkCollectionField,
    "any": IvkAnyField,
}


def field_class_for(kind: str) -> type[IvkField[Any]]:
    """The field class for a schema kind; kinds the client does not type get ``IvkAnyField``."""
    return FIELD_CLASSES.get(kind, IvkAnyField)
