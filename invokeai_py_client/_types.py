"""Small shared types: the "not given" sentinel and JSON aliases."""

from __future__ import annotations

from typing import Any, Final, TypeAlias

__all__ = ["NOT_GIVEN", "JSONDict", "NotGiven"]

JSONDict: TypeAlias = dict[str, Any]


class NotGiven:
    """Marks an argument the caller left out, so ``None`` can still mean "no limit"."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
