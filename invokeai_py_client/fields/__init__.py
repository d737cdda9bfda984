"""Typed workflow inputs, made from the server's own invocation schemas.

``load_invocation_schemas`` reads (and caches) what the server says about every node's inputs,
``make_field`` turns one input into a typed ``IvkField`` whose value is checked on assignment,
and ``to_api()`` gives the value in the shape ``enqueue_batch`` expects.
"""

from __future__ import annotations

from .base import IvkField
from .factory import guess_kind, make_field
from .kinds import (
    IvkAnyField,
    IvkBoardField,
    IvkBooleanField,
    IvkBoundingBoxField,
    IvkCLIPField,
    IvkCollectionField,
    IvkColorField,
    IvkEnumField,
    IvkFloatField,
    IvkImageField,
    IvkIntegerField,
    IvkLatentsField,
    IvkLoRAField,
    IvkModelIdentifierField,
    IvkSchedulerField,
    IvkStringField,
    IvkTensorField,
    IvkTransformerField,
    IvkUNetField,
    SchedulerName,
    field_class_for,
)
from .schema import FieldSpec, InvocationSchemas, load_invocation_schemas, parse_openapi

__all__ = [
    "FieldSpec",
    "InvocationSchemas",
    "IvkAnyField",
    "IvkBoardField",
    "IvkBooleanField",
    "IvkBoundingBoxField",
    "IvkCLIPField",
    "IvkCollectionField",
    "IvkColorField",
    "IvkEnumField",
    "IvkField",
    "IvkFloatField",
    "IvkImageField",
    "IvkIntegerField",
    "IvkLatentsField",
    "IvkLoRAField",
    "IvkModelIdentifierField",
    "IvkSchedulerField",
    "IvkStringField",
    "IvkTensorField",
    "IvkTransformerField",
    "IvkUNetField",
    "SchedulerName",
    "field_class_for",
    "guess_kind",
    "load_invocation_schemas",
    "make_field",
    "parse_openapi",
]
