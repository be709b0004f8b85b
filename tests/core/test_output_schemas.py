"""The structured-outputs schema subset and its 400s (core/output_schemas.py)."""

from __future__ import annotations

from typing import Any

import pytest

from parley.core.output_schemas import check_output_schema
from parley.errors import InvalidRequestError

PATH = "output_config.format.schema"


def closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("flat object", closed({"name": {"type": "string"}, "age": {"type": "integer"}})),
    (
        "nested objects and arrays",
        closed(
            {
                "people": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed({"name": {"type": "string", "description": "full name"}}),
                }
            }
        ),
    ),
    ("enum and const", closed({"mode": {"enum": ["a", "b", 3, None]}, "v": {"const": 1}})),
    ("nullable by type list", closed({"x": {"type": ["string", "null"]}})),
    ("anyOf", closed({"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}})),
    (
        "$defs and $ref",
        {
            "$defs": {"Item": closed({"id": {"type": "string", "format": "uuid"}})},
            **closed({"item": {"$ref": "#/$defs/Item"}}),
        },
    ),
    ("pattern", closed({"code": {"type": "string", "pattern": "^[A-Z]{3}$"}})),
    ("a bare array", {"type": "array", "items": {"type": "integer"}}),
]


@pytest.mark.parametrize(("name", "schema"), ACCEPTED, ids=[n for n, _ in ACCEPTED])
def test_supported_schemas_pass(name: str, schema: dict[str, Any]) -> None:
    check_output_schema(schema, PATH)


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "integer bounds",
        closed({"n": {"type": "integer", "minimum": 1}}),
        "For 'integer' type, property 'minimum' is not supported",
    ),
    (
        "two number keywords, named in order",
        closed({"n": {"type": "number", "minimum": 0, "maximum": 5}}),
        "For 'number' type, properties maximum, minimum are not supported",
    ),
    (
        "string length",
        closed({"s": {"type": "string", "maxLength": 5}}),
        "For 'string' type, property 'maxLength' is not supported",
    ),
    (
        "additionalProperties missing",
        {"type": "object", "properties": {"a": {"type": "string"}}},
        "For 'object' type, 'additionalProperties' must be explicitly set to false",
    ),
    (
        "additionalProperties true",
        {"type": "object", "properties": {}, "additionalProperties": True},
        "For 'object' type, 'additionalProperties: true' is not supported. "
        "Please set 'additionalProperties' to false",
    ),
    (
        "minItems above 1",
        closed({"xs": {"type": "array", "items": {"type": "string"}, "minItems": 2}}),
        "For 'array' type, 'minItems' values other than 0 or 1 are not supported",
    ),
    (
        "maxItems",
        closed({"xs": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}),
        "For 'array' type, property 'maxItems' is not supported",
    ),
    (
        "unknown format",
        closed({"s": {"type": "string", "format": "credit-card"}}),
        "For 'string' type, format 'credit-card' is not supported",
    ),
    (
        "recursion",
        {
            "$defs": {"Node": closed({"next": {"$ref": "#/$defs/Node"}})},
            "$ref": "#/$defs/Node",
        },
        "Recursive schemas are not supported",
    ),
    (
        "external reference",
        closed({"x": {"$ref": "https://example.com/schema.json"}}),
        "External references are not supported: 'https://example.com/schema.json'",
    ),
    (
        "lookahead in a pattern",
        closed({"s": {"type": "string", "pattern": "^(?=a).*$"}}),
        "pattern '^(?=a).*$' uses backreferences, lookaround or word boundaries, "
        "which are not supported",
    ),
    (
        "complex enum value",
        closed({"x": {"enum": [{"a": 1}]}}),
        "enum values must be strings, numbers, booleans or null",
    ),
]


@pytest.mark.parametrize(("name", "schema", "message"), REFUSED, ids=[n for n, _, _ in REFUSED])
def test_unsupported_schemas_are_refused_with_the_api_wording(
    name: str, schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_output_schema(schema, PATH)
    assert caught.value.message == f"{PATH}: {message}"
