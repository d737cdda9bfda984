"""The package root exports exactly its public API, sorted, and every name resolves."""

from __future__ import annotations

import invokeai_py_client

ISSUE_2_NAMES = {
    "InvokeAIClient",
    "WorkflowDefinition",
    "IvkField",
    "IvkStringField",
    "IvkIntegerField",
    "IvkFloatField",
    "IvkBooleanField",
    "IvkImageField",
    "IvkBoardField",
    "IvkLatentsField",
    "IvkTensorField",
    "IvkModelIdentifierField",
    "IvkUNetField",
    "IvkCLIPField",
    "IvkTransformerField",
    "IvkLoRAField",
    "IvkColorField",
    "IvkBoundingBoxField",
    "IvkCollectionField",
    "IvkEnumField",
    "IvkSchedulerField",
    "SchedulerName",
    "JobStatus",
    "ImageCategory",
    "BaseModelEnum",
    "IvkImage",
    "IvkJob",
    "IvkDnnModel",
}


def test_all_is_sorted_and_resolves() -> None:
    names = invokeai_py_client.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(invokeai_py_client, name) is not None, name


def test_issue_api_is_exported() -> None:
    assert set(invokeai_py_client.__all__) >= ISSUE_2_NAMES


def test_no_public_name_is_left_unexported() -> None:
    public = {
        name
        for name, value in vars(invokeai_py_client).items()
        if not name.startswith("_") and not isinstance(value, type(invokeai_py_client))
    }
    assert public == set(invokeai_py_client.__all__) - {"__version__"}


def test_field_classes_build_with_no_arguments() -> None:
    field_names = [
        n for n in invokeai_py_client.__all__ if n.startswith("Ivk") and n.endswith("Field")
    ]
    assert len(field_names) >= 18
    for name in field_names:
        field = getattr(invokeai_py_client, name)()
        assert isinstance(field, invokeai_py_client.IvkField), name
        assert not field.is_set(), name
