"""Tool input schemas: the API's checks on them (api-spec §5.4), validating an input
against one, and the smallest input that satisfies one (for the scripted engine)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from parley.errors import InvalidRequestError

# Observed wordings (api-spec §5.4 and public reports of real 400s).
INVALID_SCHEMA = (
    "JSON schema is invalid. It must match JSON Schema draft 2020-12 "
    "(https://json-schema.org/draft/2020-12). Learn more about tool use at "
    "https://docs.claude.com/en/docs/tool-use."
)
TOP_LEVEL_COMBINATOR = "input_schema does not support oneOf, allOf, or anyOf at the top level"


def check_input_schema(schema: Mapping[str, Any], path: str) -> None:
    """`path` is the schema's place in the body, e.g. `tools.0.custom.input_schema`."""
    if {"oneOf", "allOf", "anyOf"} & schema.keys():
        raise InvalidRequestError(f"{path}: {TOP_LEVEL_COMBINATOR}")
    try:
        Draft202012Validator.check_schema(schema)
    except (SchemaError, RecursionError):  # nested past what the validator can walk
        raise InvalidRequestError(f"{path}: {INVALID_SCHEMA}") from None


def input_errors(schema: Mapping[str, Any], input_json: str) -> list[str]:
    """Why `input_json` is not a valid input for `schema` (empty when it is)."""
    try:
        value = json.loads(input_json) if input_json.strip() else {}
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(value, dict):
        return ["not a JSON object"]
    return value_errors(schema, value)


def value_errors(schema: Mapping[str, Any], value: Any) -> list[str]:
    """Why `value` does not match `schema` (empty when it does)."""
    validator = Draft202012Validator(schema)
    try:
        return [error.message for error in validator.iter_errors(value)]
    except RecursionError:  # a `$ref` loop the value keeps following
        return ["nested too deeply to be checked against the schema"]


# How far minimal_instance follows nesting and `$ref`s (a schema may refer to itself),
# and the longest string or array it makes: a scripted reply, not a stress test.
_MAX_NESTING = 32
_MAX_LENGTH = 1024


def minimal_instance(schema: Any, root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A small value that satisfies `schema`: required properties only, the first
    enum value or alternative, the lowest allowed number, the shortest string.
    Best effort for `pattern` and `format`, which it does not try to satisfy, and
    for schemas nested (or referring to themselves) past `_MAX_NESTING`."""
    root = root if root is not None else schema
    if not isinstance(schema, Mapping) or depth > _MAX_NESTING:
        return None
    depth += 1
    if "$ref" in schema:
        return minimal_instance(_resolve(schema["$ref"], root), root, depth)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root, depth)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = minimal_instance(part, root, depth)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema or "required" in schema else None
    return _of_type(kind, schema, root, depth)


def _of_type(
    kind: str | None, schema: Mapping[str, Any], root: Mapping[str, Any], depth: int
) -> Any:
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: minimal_instance(properties.get(name, {}), root, depth)
            for name in schema.get("required", [])
        }
    if kind == "array":
        prefix = [minimal_instance(s, root, depth) for s in schema.get("prefixItems", [])]
        count = min(_MAX_LENGTH, max(0, schema.get("minItems", 0) - len(prefix)))
        items = schema.get("items", {})
        return prefix + [minimal_instance(items, root, depth) for _ in range(count)]
    if kind == "string":
        length = min(_MAX_LENGTH, schema.get("minLength", 0))
        return _FORMATS.get(schema.get("format", ""), "a" * length)
    if kind in ("integer", "number"):
        return _lowest(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    return None


_FORMATS = {
    "date": "2000-01-01",
    "time": "00:00:00Z",
    "date-time": "2000-01-01T00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _lowest(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    if "minimum" in schema:
        low: float = schema["minimum"]
        value: int | float = math.ceil(low) if integer else low
    elif "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"]
        value = math.floor(low) + 1 if integer else low + 1
        if "maximum" in schema and value > schema["maximum"]:
            value = (low + schema["maximum"]) / 2
    elif "maximum" in schema and schema["maximum"] < 0:
        value = math.floor(schema["maximum"]) if integer else schema["maximum"]
    else:
        value = 0
    return value


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#").split("/")[1:]:
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node
