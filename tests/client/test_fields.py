"""Typed input fields: good values, bad values (errors naming the input), API shapes, factory."""

from __future__ import annotations

from typing import Any

import pytest

from invokeai_py_client.exceptions import InputValidationError
from invokeai_py_client.fields import (
    FieldSpec,
    IvkAnyField,
    IvkBoardField,
    IvkBooleanField,
    IvkBoundingBoxField,
    IvkCLIPField,
    IvkCollectionField,
    IvkColorField,
    IvkEnumField,
    IvkField,
    IvkFloatField,
    IvkImageField,
    IvkIntegerField,
    IvkLatentsField,
    IvkLoRAField,
    IvkModelIdentifierField,
    IvkSchedulerField,
    IvkStringField,
    IvkTensorField,
    IvkTransformerField,
    IvkUNetField,
    SchedulerName,
    guess_kind,
    make_field,
)

MODEL = {"key": "k1", "hash": "blake3:abc", "name": "sd15", "base": "sd-1", "type": "main"}
ALL_CLASSES = [
    IvkStringField,
    IvkIntegerField,
    IvkFloatField,
    IvkBooleanField,
    IvkImageField,
    IvkBoardField,
    IvkLatentsField,
    IvkTensorField,
    IvkModelIdentifierField,
    IvkUNetField,
    IvkCLIPField,
    IvkTransformerField,
    IvkLoRAField,
    IvkColorField,
    IvkBoundingBoxField,
    IvkCollectionField,
    IvkEnumField,
    IvkSchedulerField,
    IvkAnyField,
]


def bound(field: IvkField[Any]) -> IvkField[Any]:
    field.bind(index=4, label="My input", node_id="node-1", field_name="the_field")
    return field


def assert_refused(field: IvkField[Any], value: Any, *reason_parts: str) -> InputValidationError:
    """Assigning ``value`` raises our error naming index, label, node and field, and the reason."""
    before = field.value
    with pytest.raises(InputValidationError) as info:
        field.value = value
    err = info.value
    assert (err.index, err.label, err.node_id, err.field_name) == (
        4,
        "My input",
        "node-1",
        "the_field",
    )
    text = str(err)
    for part in ("input 4", "'My input'", "node node-1", "field the_field", *reason_parts):
        assert part in text, f"{part!r} not in {text!r}"
    assert field.value == before, "a refused value must not replace the old one"
    return err


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_field_class_is_constructible_without_arguments(cls: type[IvkField[Any]]) -> None:
    field = cls()
    assert field.value is None
    assert not field.is_set()
    assert field.to_api() is None


# --- scalars -----------------------------------------------------------------------------------


def test_integer_accepts_ints_and_integral_floats() -> None:
    field = bound(IvkIntegerField(minimum=0, maximum=100))
    field.value = 7
    assert field.value == 7 and field.to_api() == 7
    field.value = 8.0
    assert field.value == 8 and isinstance(field.value, int)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (7.5, "expected an integer"),
        (True, "bool"),
        ("7", "str"),
        (101, "maximum 100"),
        (-1, "minimum 0"),
    ],
)
def test_integer_refuses_bad_values(bad: Any, reason: str) -> None:
    field = bound(IvkIntegerField(minimum=0, maximum=100, value=5))
    assert_refused(field, bad, reason)


def test_integer_multiple_of_and_exclusive_bounds() -> None:
    field = bound(IvkIntegerField(multiple_of=8, exclusive_minimum=0))
    field.value = 512
    assert_refused(field, 500, "multiple of 8")
    assert_refused(field, 0, "greater than 0")


def test_float_takes_int_and_stores_float() -> None:
    field = bound(IvkFloatField(minimum=0, exclusive_maximum=1))
    field.value = 0
    assert field.value == 0.0 and isinstance(field.value, float)
    assert IvkFloatField(value=7).value == 7.0
    assert isinstance(IvkFloatField(value=7).to_api(), float)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (True, "bool"),
        ("0.5", "str"),
        (1, "less than 1"),
        (-0.1, "minimum 0"),
        (float("nan"), "finite"),
    ],
)
def test_float_refuses_bad_values(bad: Any, reason: str) -> None:
    assert_refused(bound(IvkFloatField(minimum=0, exclusive_maximum=1)), bad, reason)


def test_float_single_or_list_input() -> None:
    field = bound(IvkFloatField(accepts_list=True, minimum=-1, maximum=2))
    field.value = [1, 0.5]
    assert field.to_api() == [1.0, 0.5]
    field.value = 1.5
    assert field.to_api() == 1.5
    assert_refused(field, [1.0, 3.0], "maximum 2")


def test_string_and_lengths() -> None:
    field = bound(IvkStringField(min_length=1, max_length=5))
    field.value = "cat"
    assert field.to_api() == "cat"
    assert_refused(field, 3, "expected a string")
    assert_refused(field, "", "at least 1")
    assert_refused(field, "abcdef", "at most 5")


def test_boolean_refuses_numbers_and_strings() -> None:
    field = bound(IvkBooleanField())
    field.value = False
    assert field.is_set() and field.to_api() is False
    assert_refused(field, 1, "True or False")
    assert_refused(field, "true", "True or False")


def test_enum_refuses_values_outside_choices_naming_them() -> None:
    field = bound(IvkEnumField(choices=("RGB", "RGBA"), value="RGB"))
    field.value = "RGBA"
    assert field.to_api() == "RGBA"
    assert_refused(field, "CMYK", "'CMYK'", "'RGB', 'RGBA'")


def test_enum_of_ints_does_not_take_bools() -> None:
    field = bound(IvkEnumField(choices=(1, 2, 4)))
    field.value = 2
    assert_refused(field, True, "not one of the choices")


def test_scheduler_field_defaults_to_known_names_and_takes_the_enum() -> None:
    field = bound(IvkSchedulerField())
    field.value = SchedulerName.DPMPP_2M_K
    assert field.value == "dpmpp_2m_k" and field.to_api() == "dpmpp_2m_k"
    field.value = "euler"
    assert_refused(field, "warp_drive", "'warp_drive'", "'euler_a'")
    assert len(SchedulerName) == 31


def test_scheduler_choices_from_a_spec_override_the_builtin_list() -> None:
    spec = FieldSpec("flux_denoise", "scheduler", "scheduler", choices=("euler", "heun", "lcm"))
    field = bound(make_field(spec, "heun"))
    assert isinstance(field, IvkSchedulerField) and field.value == "heun"
    assert_refused(field, "ddim", "'ddim'", "'lcm'")


# --- structured values -------------------------------------------------------------------------


class _ImageLike:
    image_name = "from-object.png"


def test_image_accepts_names_dicts_and_objects() -> None:
    field = bound(IvkImageField())
    field.value = "a.png"
    assert field.to_api() == {"image_name": "a.png"}
    field.value = {"image_name": "b.png"}
    assert field.value == "b.png"
    field.value = _ImageLike()
    assert field.to_api() == {"image_name": "from-object.png"}
    assert_refused(field, 12, "image name")
    assert_refused(field, {"name": "x.png"}, "image name")
    assert_refused(field, "", "image name")


def test_board_shapes_and_editor_sentinels() -> None:
    field = bound(IvkBoardField())
    field.value = "board-123"
    assert field.to_api() == {"board_id": "board-123"}
    field.value = {"board_id": "board-9"}
    assert field.to_api() == {"board_id": "board-9"}
    for sentinel in ("auto", "none"):
        field.value = sentinel
        assert field.is_set() and field.value == sentinel
        assert field.to_api() is None, "auto/none send no board, as the editor does"
    assert_refused(field, 5, "board id")


def test_latents_and_tensor() -> None:
    latents = bound(IvkLatentsField())
    latents.value = {"latents_name": "l1", "seed": 3}
    assert latents.to_api() == {"latents_name": "l1", "seed": 3}
    latents.value = "l2"
    assert latents.to_api() == {"latents_name": "l2"}
    assert_refused(latents, {"latents_name": "l", "seed": "x"}, "'seed' must be an integer")
    tensor = bound(IvkTensorField(value={"tensor_name": "t"}))
    assert tensor.to_api() == {"tensor_name": "t"}
    assert_refused(tensor, [], "tensor name")


def test_color_from_dict_hex_and_tuple() -> None:
    field = bound(IvkColorField())
    field.value = {"r": 1, "g": 2, "b": 3}
    assert field.to_api() == {"r": 1, "g": 2, "b": 3, "a": 255}
    field.value = "#ff8000"
    assert field.to_api() == {"r": 255, "g": 128, "b": 0, "a": 255}
    field.value = "#00000080"
    assert field.value == {"r": 0, "g": 0, "b": 0, "a": 128}
    field.value = (10, 20, 30, 40)
    assert field.to_api() == {"r": 10, "g": 20, "b": 30, "a": 40}
    assert_refused(field, {"r": 256, "g": 0, "b": 0}, "'r' must be between 0 and 255")
    assert_refused(field, "#12345", "#rrggbb")
    assert_refused(field, {"r": 1.5, "g": 0, "b": 0}, "'r' must be an integer")


def test_model_identifier_shapes() -> None:
    field = bound(IvkModelIdentifierField())
    field.value = {**MODEL, "submodel_type": "unet", "description": "dropped"}
    assert field.to_api() == {**MODEL, "submodel_type": "unet"}
    err = assert_refused(field, {"name": "sd15", "base": "sd-1", "type": "main"}, "key, hash")
    assert "sync_dnn_model" in err.reason
    assert_refused(field, "sd15", "model identifier")


def test_model_identifier_reads_legacy_names_and_pydantic_models() -> None:
    from pydantic import BaseModel

    class Model(BaseModel):
        key: str = "k"
        hash: str = "h"
        name: str = "n"
        base: str = "sdxl"
        type: str = "main"

    field = IvkModelIdentifierField(value=Model())
    assert field.to_api() == {"key": "k", "hash": "h", "name": "n", "base": "sdxl", "type": "main"}
    legacy = {"key": "k", "hash": "h", "model_name": "n", "base_model": "sd-1", "model_type": "vae"}
    assert IvkModelIdentifierField(value=legacy).to_api()["type"] == "vae"


def test_lora_single_or_list() -> None:
    field = bound(IvkLoRAField(accepts_list=True))
    field.value = {"lora": {**MODEL, "type": "lora"}, "weight": 1}
    assert field.to_api() == {"lora": {**MODEL, "type": "lora"}, "weight": 1.0}
    field.value = [{"lora": MODEL, "weight": 0.5}, {"lora": MODEL, "weight": 0.25}]
    assert [item["weight"] for item in field.to_api()] == [0.5, 0.25]
    assert_refused(field, {"lora": MODEL, "weight": "heavy"}, "'weight' must be a number")


def test_unet_clip_transformer_bundles() -> None:
    unet = bound(IvkUNetField())
    unet.value = {"unet": MODEL, "scheduler": MODEL, "loras": [], "seamless_axes": ["x"]}
    assert unet.to_api()["seamless_axes"] == ["x"]
    assert_refused(unet, {"unet": MODEL, "loras": []}, "model identifier")
    clip = bound(IvkCLIPField(value={"tokenizer": MODEL, "text_encoder": MODEL, "loras": []}))
    assert clip.to_api()["skipped_layers"] == 0
    assert_refused(
        clip, {"tokenizer": MODEL, "text_encoder": MODEL, "skipped_layers": -1}, "at least 0"
    )
    transformer = bound(IvkTransformerField(value={"transformer": MODEL}))
    assert transformer.to_api() == {"transformer": MODEL, "loras": []}
    assert_refused(transformer, {"transformer": MODEL, "loras": "none"}, "'loras' must be a list")


def test_bounding_box() -> None:
    field = bound(IvkBoundingBoxField())
    field.value = {"x_min": 0, "x_max": 10, "y_min": 0, "y_max": 20, "score": 1}
    assert field.to_api() == {"x_min": 0, "x_max": 10, "y_min": 0, "y_max": 20, "score": 1.0}
    assert_refused(field, {"x_min": 0, "x_max": 10, "y_min": 0}, "'y_max' must be an integer")
    assert_refused(field, {"x_min": 0, "x_max": 1, "y_min": 0, "y_max": 1, "score": 2}, "[0, 1]")


def test_collection_checks_items_and_length() -> None:
    field = bound(IvkCollectionField(item_kind="integer", min_length=1, max_length=3))
    field.value = (1, 2.0, 3)
    assert field.value == [1, 2, 3] and field.to_api() == [1, 2, 3]
    assert_refused(field, [1, 2.5], "item 1", "expected an integer")
    assert_refused(field, [], "at least 1 items")
    assert_refused(field, [1, 2, 3, 4], "at most 3 items")
    assert_refused(field, "123", "expected a list")


def test_collection_of_images_and_of_enums() -> None:
    images = IvkCollectionField(item_kind="image", value=["a.png", {"image_name": "b.png"}])
    assert images.to_api() == [{"image_name": "a.png"}, {"image_name": "b.png"}]
    enums = bound(IvkCollectionField(item_kind="enum", choices=("x", "y")))
    enums.value = ["x", "y", "x"]
    assert_refused(enums, ["x", "z"], "item 1", "'z'")


# --- errors before binding, and pydantic never leaking -----------------------------------------


def test_errors_before_bind_name_what_is_known() -> None:
    field = make_field(FieldSpec("img_blur", "radius", "float", title="Radius", minimum=0), 8)
    with pytest.raises(InputValidationError) as info:
        field.value = -1
    assert info.value.label == "Radius" and info.value.field_name == "radius"
    assert info.value.index is None and "minimum 0" in str(info.value)


def test_constructor_with_a_bad_value_raises_our_error() -> None:
    with pytest.raises(InputValidationError, match="expected an integer"):
        IvkIntegerField(value=7.5)


def test_validate_value_converts_without_assigning() -> None:
    field = IvkFloatField(value=1.0)
    assert field.validate_value(3) == 3.0
    assert field.value == 1.0
    with pytest.raises(InputValidationError, match="no value"):
        field.validate_value(None)


def test_none_clears_a_value() -> None:
    field = IvkIntegerField(value=3, required=True)
    field.value = None
    assert not field.is_set() and field.to_api() is None


def test_metadata_from_spec() -> None:
    spec = FieldSpec(
        "blank_image", "width", "integer", title="Width", default=512, multiple_of=8, input="any"
    )
    field = make_field(spec, 256)
    assert isinstance(field, IvkIntegerField)
    assert (field.title, field.default, field.multiple_of, field.spec) == ("Width", 512, 8, spec)
    assert field.model_dump()["value"] == 256


# --- factory ------------------------------------------------------------------------------------


def test_make_field_converts_editor_shapes() -> None:
    color = make_field(FieldSpec("color", "color", "color"), {"r": 1, "g": 2, "b": 3, "a": 4})
    assert isinstance(color, IvkColorField) and color.to_api() == {"r": 1, "g": 2, "b": 3, "a": 4}
    board = make_field(FieldSpec("img_blur", "board", "board"), "auto")
    assert isinstance(board, IvkBoardField) and board.to_api() is None
    floats = make_field(FieldSpec("x", "v", "float"), 7)
    assert isinstance(floats, IvkFloatField) and floats.value == 7.0
    untyped = make_field(FieldSpec("x", "vae", "vae"), {"vae": MODEL})
    assert isinstance(untyped, IvkAnyField) and untyped.kind == "vae"


def test_make_field_keeps_an_unfitting_file_value_unset() -> None:
    spec = FieldSpec("img_resize", "width", "integer", minimum=1)
    field = make_field(spec, 0)
    assert field.value is None and field.file_value == 0
    model = make_field(FieldSpec("main_model_loader", "model", "model"), {"name": "sd15"})
    assert model.value is None and model.file_value == {"name": "sd15"}


@pytest.mark.parametrize(
    ("value", "name", "expected"),
    [
        (True, None, ("boolean", None)),
        (7, None, ("integer", None)),
        (7.5, None, ("float", None)),
        ("hi", None, ("string", None)),
        ("auto", "board", ("board", None)),
        ("euler", "scheduler", ("scheduler", None)),
        ({"image_name": "a"}, None, ("image", None)),
        ({"board_id": "b"}, None, ("board", None)),
        ({"r": 0, "g": 0, "b": 0, "a": 255}, None, ("color", None)),
        (MODEL, None, ("model", None)),
        ({"lora": MODEL, "weight": 1}, None, ("lora", None)),
        ({"x_min": 0, "x_max": 1, "y_min": 0, "y_max": 1}, None, ("bounding_box", None)),
        ([1, 2], None, ("collection", "integer")),
        ([1, "a"], None, ("collection", "any")),
        ([{"image_name": "a"}], None, ("collection", "image")),
        (None, None, ("any", None)),
        ({"foo": 1}, None, ("any", None)),
    ],
)
def test_guess_kind_without_a_server(
    value: Any, name: str | None, expected: tuple[Any, Any]
) -> None:
    assert guess_kind(value, name) == expected
    field = make_field(None, value, field_name=name)
    assert field.kind == expected[0]
    if value is not None:
        assert field.is_set()
