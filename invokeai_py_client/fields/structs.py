"""Fields whose server shape is a small object: images, boards, models, colours, boxes, ...

Values are stored as plain data (a name string or a dict) so they print, compare and serialise
without ceremony; ``to_api()`` gives the object the server's pydantic models expect
(``invokeai/app/invocations/fields.py``, ``model.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import IvkField, describe

__all__ = [
    "BOARD_SENTINELS",
    "IvkBoardField",
    "IvkBoundingBoxField",
    "IvkCLIPField",
    "IvkColorField",
    "IvkImageField",
    "IvkLatentsField",
    "IvkLoRAField",
    "IvkModelIdentifierField",
    "IvkTensorField",
    "IvkTransformerField",
    "IvkUNetField",
    "check_model_fits",
    "model_identifier",
]

BOARD_SENTINELS = frozenset({"auto", "none"})
"""Board picker values the editor saves; the graph leaves ``board`` unset for both (the server's
``workflow_graph_builder.py`` drops them the same way)."""

_MODEL_KEYS = ("key", "hash", "name", "base", "type")
# Model references written by older editors (3.x workflows) used these names.
_LEGACY_MODEL_KEYS = {"model_name": "name", "base_model": "base", "model_type": "type"}
_HEX_COLOR = re.compile(r"#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?")


def _named(v: Any, attr: str, what: str) -> str:
    """A non-empty name from a string, a ``{attr: ...}`` dict, or an object with ``attr``."""
    if isinstance(v, Mapping):
        v = v.get(attr)
    elif not isinstance(v, str) and isinstance(getattr(v, attr, None), str):
        v = getattr(v, attr)
    if not isinstance(v, str) or not v:
        raise TypeError(f"expected {what} (a string or {{'{attr}': ...}}), got {describe(v)}")
    return v


def _as_dict(v: Any, what: str) -> dict[str, Any]:
    if isinstance(v, Mapping):
        return dict(v)
    dump = getattr(v, "model_dump", None)
    if callable(dump):
        return dict(dump())
    raise TypeError(f"expected {what} as a dict, got {describe(v)}")


def _int_in(data: Mapping[str, Any], key: str, low: int | None, high: int | None) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"'{key}' must be an integer, got {describe(v)}")
    if low is not None and high is not None and not low <= v <= high:
        raise ValueError(f"'{key}' must be between {low} and {high}, got {v}")
    if low is not None and v < low:
        raise ValueError(f"'{key}' must be at least {low}, got {v}")
    return v


def model_identifier(v: Any) -> dict[str, Any]:
    """A model identifier dict (key, hash, name, base, type[, submodel_type]) from user input.

    Accepts a dict, a pydantic model (``IvkDnnModel``), or a legacy dict with ``model_name``,
    ``base_model`` and ``model_type``; raises ValueError naming what is missing.
    """
    data = _as_dict(v, "a model identifier (key, hash, name, base, type)")
    for old, new in _LEGACY_MODEL_KEYS.items():
        if old in data and new not in data:
            data[new] = data[old]
    missing = [k for k in _MODEL_KEYS if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise ValueError(
            f"model identifier lacks {', '.join(missing)} "
            "(give an installed model, or resolve the file's reference with sync_dnn_model())"
        )
    out = {k: str(data[k]) for k in _MODEL_KEYS}
    if data.get("submodel_type") is not None:
        out["submodel_type"] = str(data["submodel_type"])
    return out


def _loras(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    loras = data.get("loras", [])
    if not isinstance(loras, list):
        raise TypeError(f"'loras' must be a list, got {describe(loras)}")
    return [_lora(item) for item in loras]


def _lora(v: Any) -> dict[str, Any]:
    data = _as_dict(v, "a LoRA ({'lora': <model identifier>, 'weight': <number>})")
    weight = data.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise TypeError(f"LoRA 'weight' must be a number, got {describe(weight)}")
    return {"lora": model_identifier(data.get("lora")), "weight": float(weight)}


class IvkImageField(IvkField[str]):
    """An image, held by its name.

    Accepts ``"x.png"``, ``{"image_name": "x.png"}`` or an object with ``image_name`` (IvkImage).
    """

    kind: str = "image"

    def _coerce(self, v: Any) -> str:
        return _named(v, "image_name", "an image name")

    def _api_one(self, v: Any) -> Any:
        return {"image_name": v}


class IvkBoardField(IvkField[str]):
    """A board id; ``"auto"`` and ``"none"`` (the editor's picker values) send no board."""

    kind: str = "board"

    def _coerce(self, v: Any) -> str:
        return _named(v, "board_id", "a board id")

    def _api_one(self, v: Any) -> Any:
        return None if v in BOARD_SENTINELS else {"board_id": v}


class IvkTensorField(IvkField[str]):
    """A tensor, by name (``{"tensor_name": ...}`` on the wire)."""

    kind: str = "tensor"

    def _coerce(self, v: Any) -> str:
        return _named(v, "tensor_name", "a tensor name")

    def _api_one(self, v: Any) -> Any:
        return {"tensor_name": v}


class IvkLatentsField(IvkField[dict[str, Any]]):
    """Latents: ``{"latents_name": ..., "seed": int | None}``; a bare name is accepted too."""

    kind: str = "latents"

    def _coerce(self, v: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"latents_name": _named(v, "latents_name", "a latents name")}
        seed = v.get("seed") if isinstance(v, Mapping) else None
        if seed is not None:
            out["seed"] = _int_in({"seed": seed}, "seed", None, None)
        return out

    def _api_one(self, v: Any) -> Any:
        return dict(v)


class IvkModelIdentifierField(IvkField[dict[str, Any]]):
    """A model reference: ``{"key", "hash", "name", "base", "type"}`` (+ ``submodel_type``)."""

    kind: str = "model"

    def _coerce(self, v: Any) -> dict[str, Any]:
        return model_identifier(v)

    def _check_constraints(self, v: Any) -> None:
        super()._check_constraints(v)
        spec = self.spec
        if spec is not None:
            check_model_fits(v, bases=spec.model_base, types=spec.model_type)

    def _api_one(self, v: Any) -> Any:
        return dict(v)


def check_model_fits(
    model: Mapping[str, Any], *, bases: tuple[str, ...] | None, types: tuple[str, ...] | None
) -> None:
    """Refuse a model whose base or type the input does not take.

    ``bases`` and ``types`` are the server's own ``ui_model_base`` / ``ui_model_type`` of the
    input. Checked before anything is sent: the server would only fail the run later, at the
    node, with a loader error that does not name the input.
    """
    described = f"model {model['name']!r} (key {model['key']})"
    if bases and "any" not in bases and model["base"] not in bases:
        raise ValueError(
            f"{described} is base {model['base']}; this input takes {', '.join(bases)}"
        )
    if types and "any" not in types and model["type"] not in types:
        raise ValueError(
            f"{described} is type {model['type']}; this input takes {', '.join(types)}"
        )


class IvkLoRAField(IvkField[dict[str, Any]]):
    """A LoRA to apply: ``{"lora": <model identifier>, "weight": float}``."""

    kind: str = "lora"

    def _coerce(self, v: Any) -> dict[str, Any]:
        return _lora(v)

    def _api_one(self, v: Any) -> Any:
        return {"lora": dict(v["lora"]), "weight": v["weight"]}


class _LoadedModelField(IvkField[dict[str, Any]]):
    """A loader's output (UNet, CLIP, transformer): model identifiers plus LoRAs."""

    model_slots: ClassVar[tuple[str, ...]] = ()

    def _coerce(self, v: Any) -> dict[str, Any]:
        data = _as_dict(v, f"a {self.kind} object")
        for key in self.model_slots:
            data[key] = model_identifier(data.get(key))
        data["loras"] = _loras(data)
        return data

    def _api_one(self, v: Any) -> Any:
        return {k: (dict(x) if isinstance(x, dict) else x) for k, x in v.items()}


class IvkUNetField(_LoadedModelField):
    """A UNet bundle: ``unet`` and ``scheduler`` identifiers, ``loras``, seamless/FreeU options."""

    kind: str = "unet"
    model_slots: ClassVar[tuple[str, ...]] = ("unet", "scheduler")


class IvkCLIPField(_LoadedModelField):
    """A CLIP bundle: ``tokenizer``/``text_encoder`` identifiers, ``skipped_layers``, ``loras``."""

    kind: str = "clip"
    model_slots: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder")

    def _coerce(self, v: Any) -> dict[str, Any]:
        data = super()._coerce(v)
        data["skipped_layers"] = _int_in({"skipped_layers": 0, **data}, "skipped_layers", 0, None)
        return data


class IvkTransformerField(_LoadedModelField):
    """A transformer bundle (FLUX and newer): ``transformer`` identifier and ``loras``."""

    kind: str = "transformer"
    model_slots: ClassVar[tuple[str, ...]] = ("transformer",)


class IvkColorField(IvkField[dict[str, int]]):
    """An RGBA colour: ``{"r", "g", "b", "a"}`` (0-255, ``a`` defaults to 255), ``"#rrggbb[aa]"``,
    or an ``(r, g, b[, a])`` tuple."""

    kind: str = "color"

    def _coerce(self, v: Any) -> dict[str, int]:
        if isinstance(v, str):
            match = _HEX_COLOR.fullmatch(v.strip())
            if not match:
                raise ValueError(f"expected a colour like '#rrggbb' or '#rrggbbaa', got {v!r}")
            rgb, alpha = match.group(1), match.group(2) or "ff"
            v = {c: int(rgb[i : i + 2], 16) for i, c in zip((0, 2, 4), "rgb", strict=True)}
            v["a"] = int(alpha, 16)
        elif isinstance(v, list | tuple) and len(v) in (3, 4):
            v = dict(zip("rgba", v, strict=False))
        if not isinstance(v, Mapping):
            raise TypeError(f"expected a colour dict or '#rrggbb', got {describe(v)}")
        data = {"a": 255, **v}
        return {c: _int_in(data, c, 0, 255) for c in "rgba"}

    def _api_one(self, v: Any) -> Any:
        return dict(v)


class IvkBoundingBoxField(IvkField[dict[str, Any]]):
    """A box: integers ``x_min``, ``x_max``, ``y_min``, ``y_max``; optional ``score`` in [0, 1]."""

    kind: str = "bounding_box"

    def _coerce(self, v: Any) -> dict[str, Any]:
        data = _as_dict(v, "a bounding box {'x_min', 'x_max', 'y_min', 'y_max'}")
        out: dict[str, Any] = {k: _int_in(data, k, None, None) for k in _BOX_KEYS}
        score = data.get("score")
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
                raise ValueError(f"'score' must be a number in [0, 1], got {describe(score)}")
            out["score"] = float(score)
        return out

    def _api_one(self, v: Any) -> Any:
        return dict(v)


_BOX_KEYS = ("x_min", "x_max", "y_min", "y_max")
