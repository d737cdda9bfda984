"""The pure parts of the OpenAI images API: role detection, explicit mappings, sizes."""

from __future__ import annotations

from typing import Any

import pytest

from app.openai_images.errors import OpenAIError
from app.openai_images.mapping import Role, detect_roles, effective_roles
from app.openai_images.requests import MAX_SIDE, Size, parse_request, parse_size


def _input(index: int, label: str, field_name: str, kind: str, node: str = "n") -> dict[str, Any]:
    return {
        "index": index,
        "label": label,
        "field_name": field_name,
        "node_id": f"{node}{index}",
        "type": kind,
    }


SDXL_LIKE = [
    _input(0, "Positive Style", "style", "string"),
    _input(1, "Negative Prompt", "prompt", "string"),
    _input(2, "Prompt", "prompt", "string"),
    _input(3, "", "width", "integer"),
    _input(4, "Output Height", "height", "integer"),
    _input(5, "Noise Seed", "seed", "integer"),
    _input(6, "Mask", "mask", "image"),
    _input(7, "Init image", "image", "image"),
    _input(8, "Steps", "steps", "integer"),
]


def test_roles_are_detected_from_kinds_labels_and_field_names() -> None:
    roles = {role: mapped.index for role, mapped in detect_roles(SDXL_LIKE).items()}
    assert roles == {
        Role.prompt: 2,
        Role.negative_prompt: 1,
        Role.width: 3,
        Role.height: 4,
        Role.seed: 5,
        Role.image: 7,
    }


def test_a_string_named_width_is_not_the_width() -> None:
    assert detect_roles([_input(0, "Width", "value", "string")]) == {}


def test_explicit_roles_win_and_null_turns_a_role_off() -> None:
    explicit = {
        "prompt": {"node_id": "n0", "field_name": "style"},
        "seed": None,
    }
    roles = effective_roles(SDXL_LIKE, explicit)
    assert roles[Role.prompt].index == 0
    assert Role.seed not in roles
    assert roles[Role.width].index == 3  # not named: still detected


def test_an_explicit_target_that_vanished_is_detected_again() -> None:
    explicit = {"prompt": {"node_id": "gone", "field_name": "prompt"}}
    assert effective_roles(SDXL_LIKE, explicit)[Role.prompt].index == 2


@pytest.mark.parametrize(
    ("raw", "size"),
    [("512x768", Size(512, 768)), (" 64 x 32 ", Size(64, 32)), ("auto", None), (None, None)],
)
def test_sizes(raw: str | None, size: Size | None) -> None:
    assert parse_size(raw) == size


@pytest.mark.parametrize("raw", ["512", "0x64", "64x0", "axb", f"{MAX_SIDE + 1}x64", "-1x5"])
def test_bad_sizes_are_400s_naming_size(raw: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        parse_size(raw)
    assert (caught.value.status, caught.value.param) == (400, "size")


def test_bad_parameters_name_the_parameter() -> None:
    with pytest.raises(OpenAIError) as caught:
        parse_request({"model": "m", "prompt": "p", "response_format": "png"})
    assert caught.value.param == "response_format"
    with pytest.raises(OpenAIError) as caught:
        parse_request({"prompt": "p"})
    assert caught.value.param == "model"
    assert parse_request({"model": "m", "prompt": "p", "quality": "hd"}).n == 1
