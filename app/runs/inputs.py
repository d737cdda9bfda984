"""Run inputs: index-keyed values checked, resolved against the server, and set on a handle.

All problems are collected before anything is uploaded, so a 422 names every bad index at
once and a refused run leaves no uploaded image behind. Image inputs take an image name (it
must exist) or a base64 ``data:`` URL (uploaded); model inputs take a model key or name.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import InputInvalid
from app.core.names import is_image_name
from invokeai_py_client import InvokeAIClient, IvkDnnModel, IvkWorkflowInput, WorkflowHandle
from invokeai_py_client.exceptions import InputValidationError, InvokeAIError

__all__ = ["Unplaceable", "apply_inputs", "decode_data_url", "parse_index"]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,(?P<data>.*)$", re.S)
Inputs = dict[int, IvkWorkflowInput]  # a handle's inputs by index


class Unplaceable(InputInvalid):
    """Every bad value names a model or an image this server lacks: another server may have
    them (``app.runs.lanes.place`` tries the next)."""


_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def parse_index(key: str) -> int | None:
    """The input index a body key names (``"3"`` -> 3), or None when it is not one."""
    key = key.strip()
    return int(key) if key.isdigit() else None


def decode_data_url(value: str) -> tuple[bytes, str]:
    """The bytes and a file name for a base64 ``data:`` URL; ValueError when malformed."""
    match = _DATA_URL.match(value)
    if match is None:
        raise ValueError("a data URL must look like data:image/png;base64,<data>")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the data URL is not valid base64: {exc}") from exc
    if not data:
        raise ValueError("the data URL holds no bytes")
    extension = _EXTENSIONS.get(match["mime"] or "", "png")
    return data, f"upload.{extension}"


def _kind(item: IvkWorkflowInput) -> str:
    spec = getattr(item.field, "spec", None)
    return str(getattr(spec, "kind", "") or getattr(item.field, "kind", "") or "")


@dataclass
class _Plan:
    """What to do with the body's values once every one has been checked."""

    values: dict[int, Any] = field(default_factory=dict)
    uploads: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    image_names: dict[int, str] = field(default_factory=dict)
    model_refs: dict[int, str] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    missing: set[int] = field(default_factory=set)  # indexes naming what this server lacks

    def problem(self, index: int | str, item: IvkWorkflowInput | None, reason: str) -> None:
        self.problems.append(
            {
                "index": index,
                "label": (item.label or item.field_name) if item is not None else None,
                "field_name": item.field_name if item is not None else None,
                "node_id": item.node_id if item is not None else None,
                "reason": reason,
            }
        )


def _plan(raw: dict[str, Any], inputs: Inputs) -> _Plan:
    plan = _Plan()
    for key, value in raw.items():
        index = parse_index(key)
        item = inputs.get(index) if index is not None else None
        if item is None:
            known = f"0..{len(inputs) - 1}" if inputs else "none"
            plan.problem(key, None, f"unknown input index {key!r} (this workflow has {known})")
            continue
        assert index is not None
        _plan_one(plan, index, item, value)
    return plan


def _plan_one(plan: _Plan, index: int, item: IvkWorkflowInput, value: Any) -> None:
    kind = _kind(item)
    if kind == "image" and isinstance(value, str) and value.startswith("data:"):
        try:
            plan.uploads[index] = decode_data_url(value)
        except ValueError as exc:
            plan.problem(index, item, str(exc))
    elif kind == "image" and isinstance(value, str) and not is_image_name(value):
        plan.problem(index, item, f"{value[:80]!r} is not an image name or a data: URL")
    elif kind == "image" and isinstance(value, str):
        plan.image_names[index] = value
    elif kind == "model" and isinstance(value, str):
        plan.model_refs[index] = value
    else:
        plan.values[index] = value


async def _check_images(client: InvokeAIClient, plan: _Plan, inputs: Inputs) -> None:
    names = list(plan.image_names.items())
    found = await asyncio.gather(*(client.board_repo.aimage_exists(n) for _, n in names))
    for (index, name), exists in zip(names, found, strict=True):
        if exists:
            plan.values[index] = name
        else:
            plan.problem(index, inputs[index], f"image {name!r} does not exist on the server")
            plan.missing.add(index)


async def _resolve_models(
    client: InvokeAIClient, plan: _Plan, inputs: Inputs, others: Sequence[InvokeAIClient]
) -> None:
    if not plan.model_refs:
        return
    models = await client.dnn_model_repo.alist_models()
    by_key = {m.key: m for m in models}
    for index, ref in plan.model_refs.items():
        model = by_key.get(ref) or next((m for m in models if m.name == ref), None)
        if model is None and others:
            model = await _same_model_here(ref, models, others)
        if model is None:
            plan.problem(index, inputs[index], f"no installed model has the key or name {ref!r}")
            plan.missing.add(index)
        else:
            plan.values[index] = model.identifier()


async def _same_model_here(
    key: str, models: Sequence[IvkDnnModel], others: Sequence[InvokeAIClient]
) -> IvkDnnModel | None:
    """This server's copy of the model another server knows by ``key``: keys differ between
    servers, a model's name, base and type do not."""
    for other in others:
        with contextlib.suppress(InvokeAIError):
            theirs = await other.dnn_model_repo.alist_models()
            found = next((m for m in theirs if m.key == key), None)
            if found is not None:
                same = (found.name, found.base, found.type)
                return next((m for m in models if (m.name, m.base, m.type) == same), None)
    return None


def _set_values(handle: WorkflowHandle, plan: _Plan, inputs: Inputs) -> None:
    for index, value in sorted(plan.values.items()):
        try:
            handle.set_input_value(index, value)
        except InputValidationError as exc:
            plan.problem(index, inputs[index], exc.reason)
        except (ValueError, TypeError) as exc:
            plan.problem(index, inputs[index], str(exc))


async def _upload(client: InvokeAIClient, handle: WorkflowHandle, plan: _Plan) -> dict[int, str]:
    uncategorized = client.board_repo.get_uncategorized_handle()
    names = {}
    for index, (data, filename) in sorted(plan.uploads.items()):
        image = await uncategorized.aupload_image_data(data, filename)
        handle.set_input_value(index, image.image_name)
        names[index] = image.image_name
    return names


async def apply_inputs(
    client: InvokeAIClient,
    handle: WorkflowHandle,
    raw: dict[str, Any],
    *,
    others: Sequence[InvokeAIClient] = (),
) -> dict[str, Any]:
    """Check every value in ``raw`` and set it on ``handle`` (for ``client``'s server; a model
    key of one of the ``others`` servers means the same model here).

    Returns:
        The inputs as they should be recorded: uploaded data URLs replaced by image names.

    Raises:
        Unplaceable: the only bad values name models or images this server lacks.
        InputInvalid: one entry per bad index (its label and why), nothing uploaded.
        APIConnectionError: InvokeAI is unreachable (checks of images and models need it).
    """
    inputs = {item.input_index: item for item in handle.list_inputs()}
    plan = _plan(raw, inputs)
    await _check_images(client, plan, inputs)
    await _resolve_models(client, plan, inputs, others)
    _set_values(handle, plan, inputs)
    if plan.problems:
        plan.problems.sort(key=_problem_order)
        bad = {p["index"] for p in plan.problems}
        error = Unplaceable if bad <= plan.missing else InputInvalid
        raise error(_summary(plan.problems), errors=plan.problems)
    uploaded = await _upload(client, handle, plan)
    recorded = dict(raw)
    for key in raw:
        index = parse_index(key)
        if index in uploaded:
            recorded[key] = uploaded[index]
    return recorded


def _problem_order(problem: dict[str, Any]) -> tuple[int, int, str]:
    index = problem["index"]
    return (0, index, "") if isinstance(index, int) else (1, 0, str(index))


def _summary(problems: list[dict[str, Any]]) -> str:
    parts = []
    for p in problems:
        label = f" ({p['label']})" if p["label"] else ""
        parts.append(f"input {p['index']}{label}: {p['reason']}")
    return "; ".join(parts)
