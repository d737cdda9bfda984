"""Point a workflow's model references at the models installed on a server (pure, no I/O).

A workflow file carries model identifiers (``{key, hash, name, base, type}``) from the
machine it was exported on. Keys are per-install ids, so on another server they rarely
exist; the same file (hash), the same name, or at least a model of the same base and type
usually does. ``resolve_model_references`` finds, for every identifier in the nodes' inputs,
the installed model by key, then hash, then name (and type), then base (and type), and
returns a new workflow dict plus a report. The input is never modified.

Identifiers may sit anywhere inside an input's value (a LoRA input holds ``{"lora": {...},
"weight": ...}``), so values are walked recursively. Schema-3 files may still use the old
shape ``{model_name, base_model, model_type}``; those are read too and written back in the
current shape. Empty model inputs (``null``) are left alone: there is nothing to match.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .models import IvkDnnModel

__all__ = [
    "MatchMethod",
    "ModelSyncReport",
    "ResolvedModel",
    "UnresolvedModel",
    "match_model",
    "resolve_model_references",
]

PathPart = str | int
LEGACY_KEYS = ("model_name", "base_model", "model_type")


class MatchMethod(StrEnum):
    """How a reference was matched, from most to least certain."""

    KEY = "key"
    HASH = "hash"
    NAME = "name"
    BASE = "base"


@dataclass(frozen=True)
class ModelRef:
    """The parts of an identifier that matching looks at (either shape)."""

    key: str | None
    hash: str | None
    name: str | None
    base: str | None
    type: str | None


@dataclass(frozen=True)
class ResolvedModel:
    """A reference that was matched; ``path`` leads from the field's value to it."""

    node_id: str
    field: str
    path: tuple[PathPart, ...]
    method: MatchMethod
    original: dict[str, Any]
    resolved: dict[str, Any]

    @property
    def changed(self) -> bool:
        """True when the identifier written differs from the one read."""
        return self.original != self.resolved


@dataclass(frozen=True)
class UnresolvedModel:
    """A reference no installed model fits."""

    node_id: str
    field: str
    path: tuple[PathPart, ...]
    reference: dict[str, Any]

    def describe(self) -> str:
        """One readable line: where, and what was looked for."""
        ref = as_ref(self.reference)
        where = f"node {self.node_id}, field {self.field}"
        if self.path:
            where += "".join(f"[{p!r}]" for p in self.path)
        return f"{where}: no installed {ref.type or 'model'} matches {ref.name!r} ({ref.base})"


@dataclass
class ModelSyncReport:
    """What ``resolve_model_references`` matched, and how, and what it could not."""

    resolved: list[ResolvedModel] = field(default_factory=list)
    unresolved: list[UnresolvedModel] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every reference found a model."""
        return not self.unresolved

    @property
    def changed(self) -> list[ResolvedModel]:
        """The references whose identifier was rewritten."""
        return [r for r in self.resolved if r.changed]


def is_model_identifier(value: Any) -> bool:
    """True for a dict shaped like a model identifier, current or legacy."""
    if not isinstance(value, Mapping):
        return False
    current = {"name", "base", "type"} <= value.keys() and ("key" in value or "hash" in value)
    legacy = {"model_name", "base_model"} <= value.keys()
    return current or legacy


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def as_ref(identifier: Mapping[str, Any]) -> ModelRef:
    """Read an identifier of either shape."""
    if "model_name" in identifier:
        return ModelRef(
            key=None,
            hash=None,
            name=_text(identifier.get("model_name")),
            base=_text(identifier.get("base_model")),
            type=_text(identifier.get("model_type")),
        )
    return ModelRef(
        key=_text(identifier.get("key")),
        hash=_text(identifier.get("hash")),
        name=_text(identifier.get("name")),
        base=_text(identifier.get("base")),
        type=_text(identifier.get("type")),
    )


def _same_type(ref: ModelRef, model: IvkDnnModel) -> bool:
    return ref.type is None or model.type == ref.type


def _prefer(candidates: list[IvkDnnModel], ref: ModelRef) -> IvkDnnModel | None:
    """The best of several candidates: same type, then same base, then same name, then by name."""
    if not candidates:
        return None

    def rank(m: IvkDnnModel) -> tuple[bool, bool, bool, str]:
        return (not _same_type(ref, m), m.base != ref.base, m.name != ref.name, m.name)

    return min(candidates, key=rank)


def _fits(method: MatchMethod, ref: ModelRef, model: IvkDnnModel) -> bool:
    if method is MatchMethod.KEY:
        return ref.key is not None and model.key == ref.key
    if method is MatchMethod.HASH:
        return ref.hash is not None and model.hash == ref.hash
    if method is MatchMethod.NAME:
        return ref.name is not None and model.name == ref.name and _same_type(ref, model)
    # The base step needs a known type, or a VAE slot could be given a main model.
    return ref.type is not None and model.base == ref.base and model.type == ref.type


def match_model(
    ref: ModelRef, installed: Sequence[IvkDnnModel]
) -> tuple[IvkDnnModel, MatchMethod] | None:
    """The installed model a reference means, and how it was found (None if none fits).

    Order: same key; same hash; same name (and type, when known); same base and type.
    """
    for method in MatchMethod:
        chosen = _prefer([m for m in installed if _fits(method, ref, m)], ref)
        if chosen is not None:
            return chosen, method
    return None


def rewrite_identifier(original: Mapping[str, Any], model: IvkDnnModel) -> dict[str, Any]:
    """The identifier of ``model``, keeping members such as ``submodel_type``."""
    kept = {k: v for k, v in original.items() if k not in LEGACY_KEYS}
    return {**kept, **model.identifier()}


class _Resolver:
    """Walks one (copied) workflow, rewriting identifiers in place and filling a report."""

    def __init__(self, installed: Sequence[IvkDnnModel]) -> None:
        self.installed = installed
        self.report = ModelSyncReport()

    def walk(self, value: Any, node_id: str, field_name: str, path: tuple[PathPart, ...]) -> Any:
        if is_model_identifier(value):
            return self.resolve(value, node_id, field_name, path)
        if isinstance(value, dict):
            for k in list(value):
                value[k] = self.walk(value[k], node_id, field_name, (*path, k))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = self.walk(item, node_id, field_name, (*path, i))
        return value

    def resolve(
        self, identifier: dict[str, Any], node_id: str, field_name: str, path: tuple[PathPart, ...]
    ) -> dict[str, Any]:
        found = match_model(as_ref(identifier), self.installed)
        if found is None:
            unresolved = UnresolvedModel(node_id, field_name, path, copy.deepcopy(identifier))
            self.report.unresolved.append(unresolved)
            return identifier
        model, method = found
        resolved = rewrite_identifier(identifier, model)
        self.report.resolved.append(
            # Copies, so editing the returned workflow cannot rewrite the report.
            ResolvedModel(
                node_id,
                field_name,
                path,
                method,
                copy.deepcopy(identifier),
                copy.deepcopy(resolved),
            )
        )
        return resolved


def resolve_model_references(
    workflow: Mapping[str, Any], installed: Sequence[IvkDnnModel]
) -> tuple[dict[str, Any], ModelSyncReport]:
    """Match every model reference in a workflow's node inputs to an installed model.

    Args:
        workflow: an editor workflow dict (``nodes[].data.inputs[field].value``); not modified.
        installed: the server's models, e.g. ``client.dnn_model_repo.list_models()``.

    Returns:
        A deep copy of the workflow with matched identifiers rewritten (unmatched ones are
        left as they were), and a report naming each reference's node, field and outcome.

    Example:
        >>> new_wf, report = resolve_model_references(wf, repo.list_models())
        >>> [u.describe() for u in report.unresolved]
        []
    """
    result = copy.deepcopy(dict(workflow))
    resolver = _Resolver(installed)
    for node in result.get("nodes") or []:
        data = node.get("data") if isinstance(node, dict) else None
        if not isinstance(data, dict):
            continue
        node_id = str(node.get("id") or data.get("id"))
        for field_name, spec in (data.get("inputs") or {}).items():
            if isinstance(spec, dict) and spec.get("value") is not None:
                spec["value"] = resolver.walk(spec["value"], node_id, field_name, ())
    return result, resolver.report
