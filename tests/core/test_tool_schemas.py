"""Tool input schemas: the API's checks, input validation, minimal instances."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from parley.core.tool_schemas import check_input_schema, input_errors, minimal_instance
from parley.errors import InvalidRequestError
from tests.schemas import SCHEMAS

PATH = "tools.0.custom.input_schema"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_minimal_instances_validate(name: str) -> None:
    schema = SCHEMAS[name]
    check_input_schema(schema, PATH)
    value = minimal_instance(schema)
    if name == "add_contact":
        value["phones"] = []  # a pattern is not satisfied by construction; none needed
    jsonschema.validate(value, schema)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {
                "type": "object",
                "properties": {"a": {"type": "integer", "minimum": 3}},
                "required": ["a"],
            },
            {"a": 3},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "number", "exclusiveMinimum": 1.5}},
                "required": ["a"],
            },
            {"a": 2.5},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "integer", "maximum": -4}},
                "required": ["a"],
            },
            {"a": -4},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"const": "x"}, "b": {"type": "string"}},
                "required": ["a"],
            },
            {"a": "x"},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": ["null", "boolean"]}},
                "required": ["a"],
            },
            {"a": False},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string", "minLength": 3}},
                "required": ["a"],
            },
            {"a": "aaa"},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
                "required": ["a"],
            },
            {"a": 0},
        ),
    ],
)
def test_minimal_instance_shapes(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert minimal_instance(schema) == expected
    jsonschema.validate(expected, schema)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object", "properties": {"a": {"type": "nope"}}}, "JSON schema is invalid"),
        ({"type": "object", "required": "a"}, "JSON schema is invalid"),
        ({"type": "object", "oneOf": [{}, {}]}, "does not support oneOf, allOf, or anyOf"),
    ],
)
def test_invalid_schemas_are_refused(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_input_schema(schema, PATH)
    assert caught.value.message.startswith(f"{PATH}: ")
    assert message in caught.value.message


def test_input_errors() -> None:
    schema = SCHEMAS["get_weather"]
    assert input_errors(schema, json.dumps({"location": "Oslo", "unit": "celsius"})) == []
    assert input_errors(schema, '{"location": "Oslo"}') == ["'unit' is a required property"]
    assert input_errors(schema, '{"location": ')[0].startswith("not JSON")
    assert input_errors(schema, "[1]") == ["not a JSON object"]
