"""The gateway uses only the client's public API: no underscore module or name, and every
name it imports from a client module is in that module's ``__all__``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
CLIENT = "invokeai_py_client"


def client_imports() -> list[tuple[str, int, str, list[str]]]:
    """(file, line, module, names) of every import of the client in app/."""
    found = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == CLIENT:
                    names = [alias.name for alias in node.names]
                    found.append((str(path.relative_to(APP)), node.lineno, node.module, names))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == CLIENT:
                        found.append((str(path.relative_to(APP)), node.lineno, alias.name, []))
    return found


def private(name: str) -> bool:
    """An underscore name that is not a dunder (``__version__`` is public by convention)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_app_imports_the_client_at_all() -> None:
    assert len(client_imports()) > 10  # the walk finds the imports it is meant to judge


def test_app_imports_no_private_module_or_name_of_the_client() -> None:
    found = [
        f"{file}:{line} {module} {names}"
        for file, line, module, names in client_imports()
        if any(private(part) for part in module.split(".")) or any(private(n) for n in names)
    ]
    assert found == []


def test_every_name_app_imports_from_the_client_is_exported() -> None:
    hidden = []
    for file, line, module, names in client_imports():
        exported = set(getattr(importlib.import_module(module), "__all__", ()))
        hidden += [f"{file}:{line} {module}.{name}" for name in names if name not in exported]
    assert hidden == []


def test_app_reaches_into_no_client_attribute_by_an_underscore_name() -> None:
    # ``client._http``, ``handle._client``: private attributes of the client's objects.
    reached = []
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"_http", "_client", "_portal"}:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id == "self"):
                    reached.append(f"{path.relative_to(APP)}:{node.lineno} .{node.attr}")
    assert reached == []
