"""Model records (InvokeAI's model configs) and the enums that classify them.

The enums list what InvokeAI 6.14 knows (``backend/model_manager/taxonomy.py``). They are
open: a base, type or format a newer server adds stays a plain string, so listing models
never fails on a server that knows more than we do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from .._models import APIModel

__all__ = [
    "INSTALL_FINISHED",
    "BaseModelEnum",
    "IvkDnnModel",
    "ModelFormat",
    "ModelInstallJob",
    "ModelType",
    "filter_models",
    "parse_models",
]


class BaseModelEnum(StrEnum):
    """The architecture a model belongs to (InvokeAI's ``BaseModelType``)."""

    ANY = "any"
    SD1 = "sd-1"
    SD2 = "sd-2"
    SD3 = "sd-3"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl-refiner"
    FLUX = "flux"
    FLUX2 = "flux2"
    COGVIEW4 = "cogview4"
    Z_IMAGE = "z-image"
    ERNIE_IMAGE = "ernie-image"
    IDEOGRAM4 = "ideogram-4"
    EXTERNAL = "external"
    QWEN_IMAGE = "qwen-image"
    ANIMA = "anima"
    KREA2 = "krea-2"
    WAN = "wan"
    UNKNOWN = "unknown"


class ModelType(StrEnum):
    """What kind of model a record is (InvokeAI's ``ModelType``)."""

    ONNX = "onnx"
    MAIN = "main"
    VAE = "vae"
    LORA = "lora"
    CONTROL_LORA = "control_lora"
    CONTROLNET = "controlnet"
    EMBEDDING = "embedding"
    IP_ADAPTER = "ip_adapter"
    CLIP_VISION = "clip_vision"
    CLIP_EMBED = "clip_embed"
    T2I_ADAPTER = "t2i_adapter"
    T5_ENCODER = "t5_encoder"
    QWEN3_ENCODER = "qwen3_encoder"
    QWEN_VL_ENCODER = "qwen_vl_encoder"
    QWEN3_VL_ENCODER = "qwen3_vl_encoder"
    MISTRAL_ENCODER = "mistral_encoder"
    WAN_T5_ENCODER = "wan_t5_encoder"
    GEMMA2_ENCODER = "gemma2_encoder"
    SPANDREL_IMAGE_TO_IMAGE = "spandrel_image_to_image"
    SIGLIP = "siglip"
    FLUX_REDUX = "flux_redux"
    LLAVA_ONEVISION = "llava_onevision"
    PROMPT_ENHANCER = "prompt_enhancer"
    TEXT_LLM = "text_llm"
    EXTERNAL_IMAGE_GENERATOR = "external_image_generator"
    PID_DECODER = "pid_decoder"
    UNKNOWN = "unknown"


class ModelFormat(StrEnum):
    """How a model is stored (the common ones; others stay strings)."""

    DIFFUSERS = "diffusers"
    CHECKPOINT = "checkpoint"
    LYCORIS = "lycoris"
    ONNX = "onnx"
    OLIVE = "olive"
    EMBEDDING_FILE = "embedding_file"
    EMBEDDING_FOLDER = "embedding_folder"
    INVOKEAI = "invokeai"
    GGUF_QUANTIZED = "gguf_quantized"
    UNKNOWN = "unknown"


# left_to_right: try the enum, then keep the raw string (pydantic's "smart" union mode
# would prefer ``str`` for every plain-string input and never produce the enum).
OpenBase = Annotated[BaseModelEnum | str, Field(union_mode="left_to_right")]
OpenType = Annotated[ModelType | str, Field(union_mode="left_to_right")]
OpenFormat = Annotated[ModelFormat | str, Field(union_mode="left_to_right")]


class IvkDnnModel(APIModel):
    """One installed model. Members the server adds beyond these are kept as extras."""

    key: str
    hash: str | None = None
    name: str
    base: OpenBase = BaseModelEnum.UNKNOWN
    type: OpenType = ModelType.UNKNOWN
    format: OpenFormat | None = None
    path: str | None = None
    description: str | None = None
    source: str | None = None
    source_type: str | None = None
    file_size: int | None = None
    variant: str | None = None

    def identifier(self) -> dict[str, Any]:
        """The model as a node input wants it: ``{key, hash, name, base, type}``."""
        return {
            "key": self.key,
            "hash": self.hash,
            "name": self.name,
            "base": str(self.base),
            "type": str(self.type),
        }


def parse_models(body: Mapping[str, Any]) -> list[IvkDnnModel]:
    """Parse the body of ``GET /api/v2/models/`` (``{"models": [...]}``)."""
    return [IvkDnnModel.model_validate(item) for item in body.get("models", [])]


def filter_models(
    models: Iterable[IvkDnnModel],
    *,
    base: str | None = None,
    type: str | None = None,
    name: str | None = None,
    exact: bool = True,
) -> list[IvkDnnModel]:
    """Keep the models that match every criterion given.

    Args:
        models: the models to filter.
        base: base architecture, e.g. ``"sdxl"`` (any string; unknown values match nothing).
        type: model type, e.g. ``"main"``.
        name: model name, compared case-insensitively.
        exact: compare ``name`` whole; when False, match names that contain it.
    """
    wanted = name.casefold() if name is not None else None

    def name_matches(model: IvkDnnModel) -> bool:
        if wanted is None:
            return True
        have = model.name.casefold()
        return have == wanted if exact else wanted in have

    return [
        m
        for m in models
        if (base is None or m.base == base) and (type is None or m.type == type) and name_matches(m)
    ]


INSTALL_FINISHED = frozenset({"completed", "error", "cancelled"})


class ModelInstallJob(APIModel):
    """A model install job of the server (``/api/v2/models/install``), as last read.

    ``status`` is one of waiting, downloading, downloads_done, running, paused, completed,
    error or cancelled; ``config_out`` is the installed model once ``completed``.
    """

    id: int
    status: str
    source: Any = None
    error: str | None = None
    error_reason: str | None = None
    bytes: int | None = None
    total_bytes: int | None = None
    config_out: IvkDnnModel | None = None

    @property
    def finished(self) -> bool:
        """Whether the job will change no more (completed, error or cancelled)."""
        return self.status in INSTALL_FINISHED
