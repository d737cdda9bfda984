"""The shortcuts that make workflow preparation cheap must not change what it gives.

* ``IvkField.from_spec`` copies one validated field per spec and class instead of building a
  new model each time: every copy must be a fresh, independent field equal to a built one.
* A value and a binding are stored without pydantic's assignment machinery: the field must
  read, dump and report errors exactly as before.
* The blocking ``create_workflow`` builds the handle on the caller's thread when the schemas
  are in memory: same handle, no trip through the portal.
* The form walk takes a quick path for dicts: other mappings must still be walked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import InputValidationError
from invokeai_py_client.fields import FieldSpec, IvkIntegerField, IvkStringField, make_field
from invokeai_py_client.fields.base import spec_metadata
from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.inputs import discover_inputs
from tests.support.workflow_factory import WorkflowBuilder

from .test_schema import FakeServer

WIDTH = FieldSpec(
    "denoise", "width", "integer", title="Width", default=512, multiple_of=8, minimum=8
)


def test_fields_from_one_spec_are_independent_copies() -> None:
    first = IvkIntegerField.from_spec(WIDTH)
    first.value = 64
    first.maximum = 100
    first.bind(index=3, label="W", node_id="n1", field_name="width")
    second = IvkIntegerField.from_spec(WIDTH)
    assert second is not first
    assert (second.value, second.maximum, second.spec) == (None, None, WIDTH)
    with pytest.raises(InputValidationError) as info:
        second.value = 3
    assert info.value.index is None and info.value.label == "Width"
    assert first.value == 64 and first.error("x").index == 3


def test_a_copied_field_equals_a_built_one() -> None:
    built = IvkIntegerField(**spec_metadata(WIDTH))
    for _ in range(2):  # the first call makes the kept field, the second copies it
        copied = IvkIntegerField.from_spec(WIDTH)
        assert copied.model_dump() == built.model_dump()
        assert copied.model_fields_set == built.model_fields_set
    # Another class from the same spec gets its own kept field.
    as_text = IvkStringField.from_spec(WIDTH)
    assert type(as_text) is IvkStringField and as_text.kind == "integer"


def test_stored_values_read_and_dump_as_assigned_ones() -> None:
    field = make_field(WIDTH, 256)
    assert field.value == 256 and field.is_set() and field.file_value == 256
    assert "value" in field.model_fields_set
    assert field.model_dump()["value"] == 256
    field.value = 16.0  # converted by the integer field
    assert field.value == 16 and type(field.value) is int
    field.value = None
    assert not field.is_set() and field.to_api() is None
    with pytest.raises(InputValidationError, match="multiple of 8"):
        field.value = 12
    assert field.value is None


def test_the_form_walk_takes_any_mapping() -> None:
    b = WorkflowBuilder()
    node = b.node("img_blur", {"radius": 2.0, "blur_type": "box"})
    b.expose(node, "blur_type")
    b.expose(node, "radius")
    data = b.build()
    form = data["form"]
    frozen = {
        "rootElementId": form["rootElementId"],
        "elements": MappingProxyType(
            {
                key: MappingProxyType({**element, "data": MappingProxyType(element["data"])})
                for key, element in form["elements"].items()
            }
        ),
    }
    defn = WorkflowDefinition.from_dict({**data, "form": frozen})
    assert [(s.field_name, s.value) for s in discover_inputs(defn)] == [
        ("blur_type", "box"),
        ("radius", 2.0),
    ]


@pytest.fixture
async def client() -> AsyncIterator[InvokeAIClient]:
    server = FakeServer()
    client = InvokeAIClient(host="fake-invokeai", transport=httpx.MockTransport(server.handler))
    yield client
    await client.aclose()


def _described(handle: Any) -> list[tuple[Any, ...]]:
    return [
        (i.input_index, i.label, i.node_id, type(i.field).__name__, i.field.value, i.required)
        for i in handle.list_inputs()
    ]


async def test_blocking_create_with_schemas_in_memory_skips_the_portal(
    client: InvokeAIClient,
) -> None:
    b = WorkflowBuilder()
    node = b.node("img_blur", {"radius": 2.5, "blur_type": "box"})
    b.expose(node, "radius")
    b.expose(node, "blur_type")
    workflow = b.build()
    from_async = await client.workflow_repo.acreate_workflow(workflow)
    from_sync = client.workflow_repo.create_workflow(workflow)
    assert not client._portal.running, "nothing needed the portal's loop"
    assert _described(from_sync) == _described(from_async)
    assert _described(from_sync)[0][3] == "IvkFloatField"
    assert from_sync.preview(batch_id="b")["batch"]["graph"]["nodes"][node]["radius"] == 2.5
