"""Registering workflows: parse a file, discover its inputs, compare versions, describe runs.

The pure functions here take plain dicts; ``describe_workflow`` is the one that asks the
client (which reads the server's invocation schemas, or falls back to the file's values).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.core.byte_cache import ByteBoundedCache, json_size
from app.core.errors import WorkflowInvalid
from invokeai_py_client import InvokeAIClient, IvkWorkflowInput, WorkflowDefinition, WorkflowHandle
from invokeai_py_client.exceptions import WorkflowValidationError

__all__ = [
    "DescribedWorkflow",
    "describe_input",
    "describe_workflow",
    "fingerprint",
    "input_changes",
    "load_handle",
    "parse_workflow_json",
    "parsed_cache_bytes",
    "run_body_schema",
]

# JSON Schema of a value, per field kind; kinds not listed accept any JSON value.
_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "boolean": {"type": "boolean"},
    "image": {
        "type": "string",
        "description": "an image name on the server, or a base64 data URL to upload",
    },
    "board": {"type": ["string", "null"], "description": "a board id"},
    "model": {"type": "string", "description": "a model key or name"},
    "color": {
        "type": "object",
        "properties": {c: {"type": "integer", "minimum": 0, "maximum": 255} for c in "rgba"},
    },
    "collection": {"type": "array"},
}


@dataclass
class DescribedWorkflow:
    """A workflow file with its discovered inputs."""

    name: str
    description: str
    definition: dict[str, Any]
    inputs: list[dict[str, Any]]
    fingerprint: str


def parse_workflow_json(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; ``WorkflowInvalid`` when it is not one."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkflowInvalid(f"the workflow is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # Python's parser recurses once per nesting level
        raise WorkflowInvalid("the workflow's JSON is nested too deeply") from exc
    if not isinstance(data, dict):
        raise WorkflowInvalid("the workflow must be a JSON object")
    return data


def _definition(data: dict[str, Any]) -> WorkflowDefinition:
    try:
        definition = WorkflowDefinition.from_dict(data)
    except ValidationError as exc:
        raise WorkflowInvalid(f"the workflow has the wrong shape: {exc}") from exc
    except WorkflowValidationError as exc:
        raise WorkflowInvalid(str(exc), errors=[{"reason": p} for p in exc.problems]) from exc
    problems = definition.validate_workflow()
    if problems:
        detail = "the workflow cannot be used: " + "; ".join(problems)
        raise WorkflowInvalid(detail, errors=[{"reason": p} for p in problems])
    return definition


# Parsed definitions of stored workflow versions, by (workflow id, version): a version's
# content never changes, and parsing a large file on every run submission is wasted work.
# Bounded by the bytes of the source JSON too: a definition may be 50 MiB.
PARSED_CACHE_SIZE = 256
PARSED_CACHE_BYTES = 32 * 1024 * 1024
_PARSED: ByteBoundedCache[tuple[str, int], WorkflowDefinition] = ByteBoundedCache(
    max_entries=PARSED_CACHE_SIZE, max_bytes=PARSED_CACHE_BYTES
)


def parsed_cache_bytes() -> int:
    """The size of the parsed definitions kept, in bytes of their source JSON."""
    return _PARSED.total_bytes


def _parsed(data: dict[str, Any], version_key: tuple[str, int] | None) -> WorkflowDefinition:
    if version_key is None:
        return _definition(data)
    found = _PARSED.get(version_key)
    if found is None:
        found = _definition(data)
        _PARSED.put(version_key, found, size=json_size(data))
    return found


async def load_handle(
    client: InvokeAIClient, data: dict[str, Any], version_key: tuple[str, int] | None = None
) -> WorkflowHandle:
    """A fresh ``WorkflowHandle`` for a stored definition.

    ``version_key`` (workflow id, version) names a stored version, whose parsed definition
    is then kept for the next runs; the handle (it holds the run's values) is always new.
    """
    definition = _parsed(data, version_key)
    try:
        return await client.workflow_repo.acreate_workflow(definition)
    except WorkflowValidationError as exc:
        raise WorkflowInvalid(str(exc), errors=[{"reason": p} for p in exc.problems]) from exc


def _spec_value(field: Any, name: str) -> Any:
    spec = getattr(field, "spec", None)
    if spec is not None and hasattr(spec, name):
        return getattr(spec, name)
    return getattr(field, name, None)


def _json_ready(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def describe_input(item: IvkWorkflowInput) -> dict[str, Any]:
    """One discovered input (an ``IvkWorkflowInput``) as the API's ``WorkflowInput``."""
    field = item.field
    kind = _spec_value(field, "kind") or type(field).__name__
    choices = _spec_value(field, "choices")
    return {
        "index": item.input_index,
        "label": item.label or item.field_name,
        "field_name": item.field_name,
        "node_id": item.node_id,
        "node_name": getattr(item, "node_name", None),
        "type": str(kind),
        "required": bool(getattr(item, "required", False)),
        "default": _json_ready(_spec_value(field, "default")),
        "value": _json_ready(getattr(field, "value", None)),
        "choices": list(choices) if choices is not None else None,
        "minimum": _spec_value(field, "minimum"),
        "maximum": _spec_value(field, "maximum"),
    }


def fingerprint(inputs: list[dict[str, Any]]) -> str:
    """A short hash of the input map (index -> node, field, type): changes when indices move."""
    key = [[i["index"], i["node_id"], i["field_name"], i["type"]] for i in inputs]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


async def describe_workflow(client: InvokeAIClient, data: dict[str, Any]) -> DescribedWorkflow:
    """Validate a workflow file and discover its inputs."""
    handle = await load_handle(client, data)
    inputs = [describe_input(item) for item in handle.list_inputs()]
    return DescribedWorkflow(
        name=str(data.get("name") or "") or "untitled",
        description=str(data.get("description") or ""),
        definition=data,
        inputs=inputs,
        fingerprint=fingerprint(inputs),
    )


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["node_id"], item["field_name"]


def input_changes(
    old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Which inputs moved to another index, vanished or appeared (matched by node and field)."""
    old_by_key = {_key(i): i for i in old}
    new_by_key = {_key(i): i for i in new}
    moved = [
        {
            "label": n["label"],
            "node_id": n["node_id"],
            "field_name": n["field_name"],
            "old_index": old_by_key[k]["index"],
            "new_index": n["index"],
        }
        for k, n in new_by_key.items()
        if k in old_by_key and old_by_key[k]["index"] != n["index"]
    ]
    vanished = [_brief(o) for k, o in old_by_key.items() if k not in new_by_key]
    appeared = [_brief(n) for k, n in new_by_key.items() if k not in old_by_key]
    return {"moved": moved, "vanished": vanished, "appeared": appeared}


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("index", "label", "node_id", "field_name")
    return {k: item[k] for k in keys}


def _value_schema(item: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"title": item["label"], **_KIND_SCHEMAS.get(item["type"], {})}
    schema["description"] = f"{item['type']} input '{item['label']}' ({item['field_name']})"
    if item.get("choices"):
        schema["enum"] = item["choices"]
    if item.get("minimum") is not None:
        schema["minimum"] = item["minimum"]
    if item.get("maximum") is not None:
        schema["maximum"] = item["maximum"]
    if item.get("value") is not None:
        schema["default"] = item["value"]
    return schema


def run_body_schema(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of ``POST /workflows/{id}/runs`` for these inputs."""
    properties = {str(i["index"]): _value_schema(i) for i in inputs}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "inputs": {
                "type": "object",
                "description": "values keyed by input index; unset inputs keep their value",
                "properties": properties,
                "additionalProperties": False,
            },
            "board_id": {"type": ["string", "null"], "description": "board for output images"},
        },
        "additionalProperties": False,
    }
