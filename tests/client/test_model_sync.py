"""Model records (tolerant parsing, filters) and matching a workflow's models to them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from invokeai_py_client.dnn_model import (
    BaseModelEnum,
    IvkDnnModel,
    MatchMethod,
    ModelType,
    resolve_model_references,
)
from invokeai_py_client.dnn_model.models import filter_models, parse_models


def model(key: str, name: str, base: str, type: str, hash: str | None = None) -> IvkDnnModel:
    return IvkDnnModel(key=key, name=name, base=base, type=type, hash=hash or f"blake3:{key}")


INSTALLED = [
    model("k-sdxl", "Juggernaut XL", "sdxl", "main"),
    model("k-sdxl-b", "Another XL", "sdxl", "main"),
    model("k-sd1", "Dreamshaper", "sd-1", "main"),
    model("k-vae", "sdxl-vae", "sdxl", "vae"),
    model("k-lora", "detail-lora", "sdxl", "lora"),
]


def ident(key: str, name: str, base: str, type: str, hash: str) -> dict[str, Any]:
    return {"key": key, "hash": hash, "name": name, "base": base, "type": type}


def workflow(*nodes: tuple[str, str, Any]) -> dict[str, Any]:
    """A workflow whose nodes each have one input ``(node_id, field, value)``."""
    return {
        "name": "t",
        "nodes": [
            {
                "id": node_id,
                "type": "invocation",
                "data": {
                    "id": node_id,
                    "type": "main_model_loader",
                    "inputs": {field: {"name": field, "label": "", "value": value}},
                },
            }
            for node_id, field, value in nodes
        ],
        "edges": [],
    }


def value_of(wf: dict[str, Any], index: int, field: str) -> Any:
    return wf["nodes"][index]["data"]["inputs"][field]["value"]


# -- parsing ---------------------------------------------------------------------------------


def test_known_base_and_type_become_enums() -> None:
    [parsed] = parse_models({"models": [{"key": "k", "name": "n", "base": "sdxl", "type": "main"}]})
    assert parsed.base is BaseModelEnum.SDXL
    assert parsed.type is ModelType.MAIN


def test_unknown_base_type_and_format_stay_strings() -> None:
    body = {
        "models": [
            {
                "key": "k",
                "hash": "blake3:x",
                "name": "future",
                "base": "sd-9",
                "type": "hologram",
                "format": "quantum",
                "brand_new_member": {"a": 1},
            }
        ]
    }
    [parsed] = parse_models(body)
    assert parsed.base == "sd-9" and not isinstance(parsed.base, BaseModelEnum)
    assert parsed.type == "hologram" and not isinstance(parsed.type, ModelType)
    assert parsed.format == "quantum"
    assert parsed.model_extra == {"brand_new_member": {"a": 1}}
    assert parsed.identifier() == ident("k", "future", "sd-9", "hologram", "blake3:x")


def test_missing_base_and_type_default_to_unknown() -> None:
    [parsed] = parse_models({"models": [{"key": "k", "name": "n"}]})
    assert parsed.base is BaseModelEnum.UNKNOWN and parsed.type is ModelType.UNKNOWN


def test_identifier_writes_plain_strings() -> None:
    ident_dict = INSTALLED[0].identifier()
    assert ident_dict == ident("k-sdxl", "Juggernaut XL", "sdxl", "main", "blake3:k-sdxl")
    assert type(ident_dict["base"]) is str


def test_filter_models() -> None:
    assert [m.key for m in filter_models(INSTALLED, base="sdxl", type="main")] == [
        "k-sdxl",
        "k-sdxl-b",
    ]
    assert [m.key for m in filter_models(INSTALLED, type=ModelType.VAE)] == ["k-vae"]
    assert filter_models(INSTALLED, base="no-such-base") == []
    assert [m.key for m in filter_models(INSTALLED, name="dreamshaper")] == ["k-sd1"]
    assert filter_models(INSTALLED, name="xl") == []
    assert [m.key for m in filter_models(INSTALLED, name="xl", exact=False)] == [
        "k-sdxl",
        "k-sdxl-b",
        "k-vae",
    ]


# -- resolving --------------------------------------------------------------------------------


def test_hash_wins_over_name_and_base() -> None:
    # The name points at one model, the hash at another: the file's hash is the surer match.
    ref = ident("elsewhere", "Juggernaut XL", "sdxl", "main", "blake3:k-sdxl-b")
    new, report = resolve_model_references(workflow(("n1", "model", ref)), INSTALLED)
    assert value_of(new, 0, "model")["key"] == "k-sdxl-b"
    [resolved] = report.resolved
    assert resolved.method is MatchMethod.HASH
    assert (resolved.node_id, resolved.field, resolved.path) == ("n1", "model", ())


def test_name_and_type_when_hash_is_unknown() -> None:
    ref = ident("elsewhere", "Another XL", "sdxl", "main", "blake3:unknown")
    new, report = resolve_model_references(workflow(("n1", "model", ref)), INSTALLED)
    assert value_of(new, 0, "model") == INSTALLED[1].identifier()
    assert report.resolved[0].method is MatchMethod.NAME


def test_name_must_have_the_same_type() -> None:
    # A LoRA called like the VAE must not be matched to the VAE by name; base+type still fits.
    ref = ident("x", "sdxl-vae", "sdxl", "lora", "blake3:unknown")
    new, report = resolve_model_references(workflow(("n1", "lora", ref)), INSTALLED)
    assert report.resolved[0].method is MatchMethod.BASE
    assert value_of(new, 0, "lora")["key"] == "k-lora"


def test_base_and_type_as_last_resort() -> None:
    ref = ident("x", "Some SD1 model", "sd-1", "main", "blake3:unknown")
    new, report = resolve_model_references(workflow(("n1", "model", ref)), INSTALLED)
    assert value_of(new, 0, "model")["key"] == "k-sd1"
    assert report.resolved[0].method is MatchMethod.BASE
    assert report.ok and report.changed == report.resolved


def test_base_choice_is_deterministic() -> None:
    ref = ident("x", "Gone XL", "sdxl", "main", "blake3:unknown")
    new, _ = resolve_model_references(workflow(("n1", "model", ref)), INSTALLED)
    again, _ = resolve_model_references(workflow(("n1", "model", ref)), list(reversed(INSTALLED)))
    assert value_of(new, 0, "model")["key"] == value_of(again, 0, "model")["key"] == "k-sdxl-b"


def test_exact_key_is_reported_unchanged() -> None:
    ref = INSTALLED[2].identifier()
    _, report = resolve_model_references(workflow(("n1", "model", ref)), INSTALLED)
    [resolved] = report.resolved
    assert resolved.method is MatchMethod.KEY and not resolved.changed
    assert report.changed == []


def test_unresolved_is_reported_and_left_alone() -> None:
    ref = ident("x", "Flux Dev", "flux", "main", "blake3:unknown")
    new, report = resolve_model_references(workflow(("n7", "model", ref)), INSTALLED)
    assert value_of(new, 0, "model") == ref
    assert not report.ok and report.resolved == []
    [missing] = report.unresolved
    assert (missing.node_id, missing.field, missing.reference) == ("n7", "model", ref)
    assert "node n7, field model" in missing.describe() and "Flux Dev" in missing.describe()


def test_base_step_needs_a_type() -> None:
    legacy = {"model_name": "Gone", "base_model": "sdxl"}
    _, report = resolve_model_references(workflow(("n1", "model", legacy)), INSTALLED)
    assert [u.node_id for u in report.unresolved] == ["n1"]


def test_input_is_never_mutated() -> None:
    ref = ident("x", "Some SD1 model", "sd-1", "main", "blake3:unknown")
    original = workflow(("n1", "model", ref), ("n2", "vae", None))
    snapshot = copy.deepcopy(original)
    new, report = resolve_model_references(original, INSTALLED)
    assert original == snapshot
    assert value_of(new, 0, "model")["key"] == "k-sd1"
    assert new["nodes"][0] is not original["nodes"][0]
    assert report.resolved[0].original == ref  # the report does not alias the output either
    value_of(new, 0, "model")["name"] = "edited"
    assert report.resolved[0].resolved["name"] == "Dreamshaper"


def test_nested_identifiers_and_extra_members() -> None:
    lora_value = {
        "lora": {**ident("x", "detail-lora", "sdxl", "lora", "blake3:nope"), "submodel_type": None},
        "weight": 0.5,
    }
    collection = [ident("y", "Gone XL", "sdxl", "main", "blake3:nope")]
    new, report = resolve_model_references(
        workflow(("a", "lora", lora_value), ("b", "models", collection)), INSTALLED
    )
    assert value_of(new, 0, "lora")["weight"] == 0.5
    assert value_of(new, 0, "lora")["lora"]["key"] == "k-lora"
    assert "submodel_type" in value_of(new, 0, "lora")["lora"]
    assert [(r.node_id, r.path) for r in report.resolved] == [("a", ("lora",)), ("b", (0,))]


def test_legacy_shape_is_rewritten_in_the_current_shape() -> None:
    legacy = {"model_name": "Dreamshaper", "base_model": "sd-1", "model_type": "main"}
    new, report = resolve_model_references(workflow(("n1", "model", legacy)), INSTALLED)
    assert value_of(new, 0, "model") == INSTALLED[2].identifier()
    assert report.resolved[0].method is MatchMethod.NAME


@pytest.mark.parametrize("value", [None, "RealESRGAN_x2plus.pth", 7, {"board_id": "x"}, []])
def test_non_model_values_are_ignored(value: Any) -> None:
    original = workflow(("n1", "thing", value))
    new, report = resolve_model_references(original, INSTALLED)
    assert new == original and report.resolved == [] and report.unresolved == []


def test_notes_nodes_and_missing_inputs_are_skipped() -> None:
    wf = {"nodes": [{"id": "note", "type": "notes", "data": {"notes": "hi"}}, {"id": "odd"}]}
    new, report = resolve_model_references(wf, INSTALLED)
    assert new == wf and report.ok


def test_shipped_workflow_with_a_model_value(shipped_workflows_dir: Any) -> None:
    import json

    wf = json.loads((shipped_workflows_dir / "MultiDiffusion SDXL.json").read_text())
    _, report = resolve_model_references(wf, INSTALLED)
    [missing] = report.unresolved
    assert missing.field == "image_to_image_model"
    assert missing.reference["name"] == "4xNomosWebPhoto_esrgan"
