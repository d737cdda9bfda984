"""Which input of a workflow plays which OpenAI role (prompt, width, height, seed, image).

Pure functions on the stored input list (``Workflow.inputs``, the dicts of
``app.workflows.describe_input``). A role is either set explicitly (stored by node and
field, see ``app.db.openai_tables``) or detected from the inputs' kinds, labels and field
names; every input that plays no role keeps the value the registered file holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ROLE_KINDS",
    "MappedInput",
    "Role",
    "detect_roles",
    "effective_roles",
    "role_kind_problem",
]


class Role(StrEnum):
    """What an OpenAI request parameter sets in a workflow."""

    prompt = "prompt"
    negative_prompt = "negative_prompt"
    width = "width"
    height = "height"
    seed = "seed"
    image = "image"


# The input kinds each role may point at.
ROLE_KINDS: dict[Role, frozenset[str]] = {
    Role.prompt: frozenset({"string"}),
    Role.negative_prompt: frozenset({"string"}),
    Role.width: frozenset({"integer"}),
    Role.height: frozenset({"integer"}),
    Role.seed: frozenset({"integer"}),
    Role.image: frozenset({"image"}),
}


@dataclass(frozen=True)
class MappedInput:
    """The input that plays a role, as the run body addresses it (by index)."""

    index: int
    label: str
    node_id: str
    field_name: str

    @classmethod
    def of(cls, item: dict[str, Any]) -> MappedInput:
        return cls(
            index=int(item["index"]),
            label=str(item.get("label") or item["field_name"]),
            node_id=str(item["node_id"]),
            field_name=str(item["field_name"]),
        )

    def public(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "node_id": self.node_id,
            "field_name": self.field_name,
        }


def _words(item: dict[str, Any]) -> set[str]:
    text = f"{item.get('label') or ''} {item.get('field_name') or ''}".lower()
    return set(re.split(r"[^a-z0-9]+", text)) - {""}


def _is_role(role: Role, item: dict[str, Any]) -> bool:
    if item.get("type") not in ROLE_KINDS[role]:
        return False
    words = _words(item)
    match role:
        case Role.prompt:
            return bool(words & {"prompt", "positive"}) and not words & {"negative", "style"}
        case Role.negative_prompt:
            return "negative" in words and "style" not in words
        case Role.image:
            return "mask" not in words
        case _:
            return role.value in words


def detect_roles(inputs: list[dict[str, Any]]) -> dict[Role, MappedInput]:
    """Each role's first matching input in form order (kind first, then label and field).

    A string input is the prompt when its label or field name says ``prompt`` or
    ``positive`` (not ``negative`` or ``style``); integers named ``width``, ``height`` and
    ``seed`` are those; the first image input that is not a mask is the image. One input
    plays at most one role.
    """
    found: dict[Role, MappedInput] = {}
    taken: set[int] = set()
    for role in Role:
        for item in inputs:
            if int(item["index"]) not in taken and _is_role(role, item):
                found[role] = MappedInput.of(item)
                taken.add(int(item["index"]))
                break
    return found


def effective_roles(
    inputs: list[dict[str, Any]], explicit: dict[str, Any] | None
) -> dict[Role, MappedInput]:
    """The roles in force: explicit ones (by node and field) over detected ones.

    ``explicit`` maps a role to ``{"node_id", "field_name"}`` or None (the role is not
    served). An explicit target that the current version no longer has is dropped, and the
    role is then detected again.
    """
    by_key = {(str(i["node_id"]), str(i["field_name"])): i for i in inputs}
    roles: dict[Role, MappedInput] = {}
    explicit = explicit or {}
    for role in Role:
        if role.value not in explicit:
            continue
        target = explicit[role.value]
        if target is None:
            continue
        item = by_key.get((str(target.get("node_id")), str(target.get("field_name"))))
        if item is not None:
            roles[role] = MappedInput.of(item)
    taken = {m.index for m in roles.values()}
    remaining = [i for i in inputs if int(i["index"]) not in taken]
    kept = {r for r in Role if r.value in explicit and explicit[r.value] is None}
    for role, mapped in detect_roles(remaining).items():
        if role not in roles and role not in kept:
            roles[role] = mapped
    return roles


def role_kind_problem(role: Role, item: dict[str, Any]) -> str | None:
    """Why ``item`` cannot play ``role`` (its kind), or None when it can."""
    kinds = ROLE_KINDS[role]
    if item.get("type") in kinds:
        return None
    label = item.get("label") or item.get("field_name")
    wanted = " or ".join(sorted(kinds))
    return (
        f"input {item['index']} ({label!r}, node {item['node_id']} field {item['field_name']}) "
        f"is a {item.get('type')} input; {role.value} needs a {wanted} input"
    )
