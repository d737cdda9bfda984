"""``-i KEY=VALUE`` arguments into a run's ``inputs``, typed by the workflow's own inputs.

``KEY`` is an input index or its label. A value is converted to the input's kind where that is
unambiguous (numbers, booleans, JSON for structured kinds); anything that does not convert is
sent as written, so the gateway's 422 names the input and the reason. ``@path`` on an image
input uploads that file through the gateway and sends the image's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.remote_cli.exit_codes import CommandFailed, ExitCode
from app.remote_cli.wire import WorkflowInfo, WorkflowInput

__all__ = ["convert_value", "parse_assignment", "run_inputs"]

PLAIN_STRING_KINDS = frozenset({"string", "enum", "scheduler", "model", "board", "image"})
TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def parse_assignment(text: str) -> tuple[str, str]:
    """``"2=hello"`` -> ``("2", "hello")``; a missing ``=`` is a usage error."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CommandFailed(ExitCode.BAD_INPUT, f"-i {text!r}: write INDEX=VALUE or LABEL=VALUE")
    return key.strip(), value


def _find_input(workflow: WorkflowInfo, key: str) -> WorkflowInput:
    if key.isdigit():
        for item in workflow.inputs:
            if item.index == int(key):
                return item
    labelled = [i for i in workflow.inputs if i.label == key]
    if len(labelled) == 1:
        return labelled[0]
    known = ", ".join(f"{i.index} ({i.label})" for i in workflow.inputs) or "none"
    why = "several inputs have the label" if labelled else "no input has the index or label"
    raise CommandFailed(
        ExitCode.BAD_INPUT, f"-i {key}=...: {why} {key!r} in {workflow.name!r}; inputs: {known}"
    )


def convert_value(kind: str, text: str) -> Any:
    """``text`` as a value of ``kind``, or unchanged when it does not convert."""
    if kind in PLAIN_STRING_KINDS:
        return text
    converters: dict[str, Callable[[str], Any]] = {"integer": int, "float": float}
    if kind in converters:
        try:
            return converters[kind](text)
        except ValueError:
            return text
    if kind == "boolean":
        word = text.strip().lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else text
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_inputs(
    workflow: WorkflowInfo, assignments: Sequence[str], upload: Callable[[Path], str]
) -> dict[str, Any]:
    """The run body's ``inputs`` for ``-i`` ``assignments``; ``@file`` images are uploaded."""
    inputs: dict[str, Any] = {}
    for text in assignments:
        key, raw = parse_assignment(text)
        item = _find_input(workflow, key)
        if item.type == "image" and raw.startswith("@"):
            path = Path(raw[1:]).expanduser()
            if not path.is_file():
                raise CommandFailed(
                    ExitCode.BAD_INPUT, f"input {item.index} ({item.label}): no file at {path}"
                )
            inputs[str(item.index)] = upload(path)
        else:
            inputs[str(item.index)] = convert_value(item.type, raw)
    return inputs
