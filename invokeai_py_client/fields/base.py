"""``IvkField``: one typed workflow input whose value is checked the moment it is set.

A field carries the server's description of the input (title, default, bounds, choices) and,
once a workflow handle has bound it, where it sits (input index, form label, node id, field
name). Every bad value raises ``InputValidationError`` naming that place, never a pydantic
error: assignment goes through ``validate_value``, not through pydantic's own validation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from ..exceptions import InputValidationError

if TYPE_CHECKING:
    from .schema import FieldSpec

__all__ = ["IvkField", "check_length", "describe", "spec_metadata"]

T = TypeVar("T")


def describe(value: Any) -> str:
    """Short ``type value`` text for error messages."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


class IvkField(BaseModel, Generic[T]):
    """A typed input value plus the server's constraints on it.

    Example:
        >>> f = IvkIntegerField(minimum=1, maximum=10)
        >>> f.value = 7
        >>> f.value = 11
        Traceback (most recent call last):
        ...
        InputValidationError: 11 is more than the maximum 10
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid", protected_namespaces=())

    value: T | None = None
    kind: str = "any"
    name: str = ""
    title: str = ""
    description: str = ""
    default: Any = None
    required: bool = False
    nullable: bool = True
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    item_kind: str | None = None
    input: str = "any"
    ui_type: str | None = None
    accepts_list: bool = False

    _index: int | None = PrivateAttr(default=None)
    _label: str | None = PrivateAttr(default=None)
    _node_id: str | None = PrivateAttr(default=None)
    _field_name: str | None = PrivateAttr(default=None)
    _spec: FieldSpec | None = PrivateAttr(default=None)
    _file_value: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        raw = data.pop("value", None)
        super().__init__(**data)
        if raw is not None:
            self.value = raw

    # Pydantic must not judge ``value``: our checks need the instance's own bounds and choices,
    # and must raise InputValidationError rather than a ValidationError.
    @field_validator("value", mode="plain")
    @classmethod
    def _accept_checked_value(cls, v: Any) -> Any:
        return v

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "value":
            self._store_value(None if value is None else self.validate_value(value))
            return
        super().__setattr__(name, value)

    def _store_value(self, checked: Any) -> None:
        # What pydantic's assignment would do for ``value`` (its validator is a pass-through,
        # and no model validator exists), at a tenth of the cost: a workflow handle sets one
        # value per input each time it is made.
        self.__dict__["value"] = checked
        self.__pydantic_fields_set__.add("value")

    def _set_private(self, **values: Any) -> None:
        # Private attributes, without pydantic's per-attribute ``__setattr__`` dispatch.
        private = self.__pydantic_private__
        assert private is not None
        private.update(values)

    @classmethod
    def from_spec(cls, spec: FieldSpec) -> IvkField[T]:
        """A field (without a value) carrying the spec's metadata and constraints."""
        # Building and validating the model takes ten times as long as copying one: keep one
        # validated field per spec and class (on the spec, which is immutable), hand out copies.
        templates = spec.field_templates
        template = templates.get(cls)
        if template is None:
            template = cls(**spec_metadata(spec))
            template._spec = spec
            templates[cls] = template
        return cast("IvkField[T]", template.model_copy())

    @property
    def spec(self) -> FieldSpec | None:
        """The server's spec this field was made from, if any."""
        return self._spec

    @property
    def file_value(self) -> Any:
        """The raw value the workflow file held, kept even when it did not fit the field."""
        return self._file_value

    def bind(self, *, index: int, label: str, node_id: str, field_name: str) -> None:
        """Record where this field sits, so errors can name the form entry."""
        self._set_private(_index=index, _label=label, _node_id=node_id, _field_name=field_name)

    def is_set(self) -> bool:
        """Whether a value has been given (None means "leave it to the server's default")."""
        return self.value is not None

    def validate_value(self, v: Any) -> T:
        """Convert and check ``v`` without assigning it.

        Raises:
            InputValidationError: the value does not fit; the message names the input.
        """
        try:
            if v is None:
                raise ValueError("no value given (assign None to clear the input)")
            if self.accepts_list and isinstance(v, list | tuple):
                return cast(T, [self._check_one(item) for item in v])
            return self._check_one(v)
        except InputValidationError:
            raise
        except (ValueError, TypeError) as exc:
            raise self.error(str(exc)) from None

    def to_api(self) -> Any:
        """The value in the server's API shape, or None when nothing should be sent."""
        if self.value is None:
            return None
        if self.accepts_list and isinstance(self.value, list):
            return [self._api_one(item) for item in self.value]
        return self._api_one(self.value)

    def error(self, reason: str) -> InputValidationError:
        """An ``InputValidationError`` naming this input as precisely as is known."""
        return InputValidationError(
            reason,
            index=self._index,
            label=self._label or self.title or self.name or None,
            node_id=self._node_id,
            field_name=self._field_name or self.name or None,
        )

    # --- hooks for the concrete kinds -------------------------------------------------------

    def _coerce(self, v: Any) -> T:
        """Convert one value to this kind's type; raise ValueError/TypeError with the reason."""
        return cast(T, v)

    def _api_one(self, v: Any) -> Any:
        """One value in the server's shape."""
        return v

    def _check_one(self, v: Any) -> T:
        converted = self._coerce(v)
        self._check_constraints(converted)
        return converted

    def _check_constraints(self, v: Any) -> None:
        if self.choices is not None and not _in_choices(v, self.choices):
            listed = ", ".join(repr(c) for c in self.choices)
            raise ValueError(f"{v!r} is not one of the choices: {listed}")
        if isinstance(v, int | float) and not isinstance(v, bool):
            _check_number(self, v)
        if isinstance(v, str | list):
            check_length(self, v)


def _in_choices(v: Any, choices: tuple[Any, ...]) -> bool:
    # ``True == 1`` in Python; a choice list of ints must not accept a bool, nor the reverse.
    return any(v == c and type(v) is type(c) for c in choices)


def _check_number(field: IvkField[Any], v: float) -> None:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    if field.minimum is not None and v < field.minimum:
        raise ValueError(f"{v} is less than the minimum {fmt(field.minimum)}")
    if field.maximum is not None and v > field.maximum:
        raise ValueError(f"{v} is more than the maximum {fmt(field.maximum)}")
    if field.exclusive_minimum is not None and v <= field.exclusive_minimum:
        raise ValueError(f"{v} must be greater than {fmt(field.exclusive_minimum)}")
    if field.exclusive_maximum is not None and v >= field.exclusive_maximum:
        raise ValueError(f"{v} must be less than {fmt(field.exclusive_maximum)}")
    step = field.multiple_of
    if step and not math.isclose(v / step, round(v / step), rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"{v} is not a multiple of {fmt(step)}")


def check_length(field: IvkField[Any], v: str | list[Any]) -> None:
    unit = "characters" if isinstance(v, str) else "items"
    if field.min_length is not None and len(v) < field.min_length:
        raise ValueError(f"needs at least {field.min_length} {unit}, got {len(v)}")
    if field.max_length is not None and len(v) > field.max_length:
        raise ValueError(f"allows at most {field.max_length} {unit}, got {len(v)}")


def spec_metadata(spec: FieldSpec) -> dict[str, Any]:
    """Constructor arguments that copy a spec's metadata onto a field."""
    return {
        "kind": spec.kind,
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "default": spec.default,
        "required": spec.required,
        "nullable": spec.nullable,
        "choices": spec.choices,
        "minimum": spec.minimum,
        "maximum": spec.maximum,
        "exclusive_minimum": spec.exclusive_minimum,
        "exclusive_maximum": spec.exclusive_maximum,
        "multiple_of": spec.multiple_of,
        "min_length": spec.min_length,
        "max_length": spec.max_length,
        "item_kind": spec.item_kind,
        "input": spec.input,
        "ui_type": spec.ui_type,
        "accepts_list": spec.accepts_list,
    }
