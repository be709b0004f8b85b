"""The JSON Schema subset of structured outputs (`output_config.format` and strict
tools), with the API's 400s for what lies outside it.

What the API supports (its structured-outputs guide, and what the SDKs' own
`transform_schema` keeps): the basic types (or a list of them), `enum` of
primitives, `const`, `anyOf`, `allOf`, local `$ref` with `$defs`/`definitions`,
annotations (`title`, `description`, `default`, `examples`, `$comment`), and per
type: object `properties`, `required` and `additionalProperties` (which must be set,
to false); array `items` and `minItems` of 0 or 1; string `format` (from a list) and
`pattern`. Everything else is refused with the observed wording, e.g.
`output_config.format.schema: For 'integer' type, property 'minimum' is not
supported` or `... For 'object' type, 'additionalProperties' must be explicitly set
to false`. Recursive and external references are refused too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from parley.errors import InvalidRequestError

_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
_COMMON = {
    "type",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$schema",
    "$id",
}
_BY_TYPE = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems"},
    "string": {"format", "pattern"},
    "integer": set(),
    "number": set(),
    "boolean": set(),
    "null": set(),
}
STRING_FORMATS = {
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "uri",
    "ipv4",
    "ipv6",
    "uuid",
}
# Regex features the guide lists as unsupported: backreferences, lookaround, word
# boundaries.
_UNSUPPORTED_REGEX = re.compile(r"\\[1-9]|\(\?[=!<]|\\[bB]")


class _Checker:
    def __init__(self, root: Mapping[str, Any], path: str) -> None:
        self.root = root
        self.path = path
        self._resolving: list[str] = []

    def fail(self, message: str) -> InvalidRequestError:
        return InvalidRequestError(f"{self.path}: {message}")

    def check(self, schema: Any) -> None:
        if not isinstance(schema, Mapping):
            raise self.fail("JSON schema is invalid: every schema must be an object.")
        if "$ref" in schema:
            self._ref(str(schema["$ref"]))
        for key in ("$defs", "definitions"):
            for sub in (schema.get(key) or {}).values():
                self.check(sub)
        kinds = schema.get("type")
        kinds_list = kinds if isinstance(kinds, list) else [kinds] if kinds else []
        for kind in kinds_list:
            if kind not in _TYPES:
                raise self.fail(f"type '{kind}' is not supported")
        allowed = set(_COMMON)
        for kind in kinds_list:
            allowed |= _BY_TYPE[kind]
        if not kinds_list and "properties" in schema:
            kinds_list, allowed = ["object"], allowed | _BY_TYPE["object"]
        extra = sorted(k for k in schema if k not in allowed)
        if extra:
            where = kinds_list[0] if kinds_list else "schema"
            if len(extra) == 1:
                raise self.fail(f"For '{where}' type, property '{extra[0]}' is not supported")
            raise self.fail(f"For '{where}' type, properties {', '.join(extra)} are not supported")
        self._values(schema)
        if "object" in kinds_list:
            self._object(schema)
        if "array" in kinds_list:
            self._array(schema)
        if "string" in kinds_list:
            self._string(schema)
        for key in ("anyOf", "allOf"):
            for sub in schema.get(key) or ():
                self.check(sub)

    def _values(self, schema: Mapping[str, Any]) -> None:
        for value in schema.get("enum") or ():
            if isinstance(value, dict | list):
                raise self.fail("enum values must be strings, numbers, booleans or null")
        if isinstance(schema.get("const"), dict | list):
            raise self.fail("const values must be strings, numbers, booleans or null")

    def _object(self, schema: Mapping[str, Any]) -> None:
        additional = schema.get("additionalProperties", None)
        if additional is True:
            raise self.fail(
                "For 'object' type, 'additionalProperties: true' is not supported. "
                "Please set 'additionalProperties' to false"
            )
        if additional is not False:
            raise self.fail(
                "For 'object' type, 'additionalProperties' must be explicitly set to false"
            )
        for sub in (schema.get("properties") or {}).values():
            self.check(sub)

    def _array(self, schema: Mapping[str, Any]) -> None:
        if schema.get("minItems", 0) not in (0, 1):
            raise self.fail(
                "For 'array' type, 'minItems' values other than 0 or 1 are not supported"
            )
        if "items" in schema:
            self.check(schema["items"])

    def _string(self, schema: Mapping[str, Any]) -> None:
        fmt = schema.get("format")
        if fmt is not None and fmt not in STRING_FORMATS:
            raise self.fail(f"For 'string' type, format '{fmt}' is not supported")
        pattern = schema.get("pattern")
        if pattern is not None:
            try:
                re.compile(str(pattern))
            except re.error:
                raise self.fail(f"pattern '{pattern}' is not a valid regular expression") from None
            if _UNSUPPORTED_REGEX.search(str(pattern)):
                raise self.fail(
                    f"pattern '{pattern}' uses backreferences, lookaround or word "
                    "boundaries, which are not supported"
                )

    def _ref(self, ref: str) -> None:
        if not ref.startswith("#/"):
            raise self.fail(f"External references are not supported: '{ref}'")
        if ref in self._resolving:
            raise self.fail("Recursive schemas are not supported")
        node: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, Mapping) or part not in node:
                raise self.fail(f"Reference '{ref}' could not be resolved")
            node = node[part]
        self._resolving.append(ref)
        try:
            self.check(node)
        finally:
            self._resolving.pop()


def check_output_schema(schema: Mapping[str, Any], path: str) -> None:
    """Refuse a schema outside the subset; `path` is where it sits in the body
    (`output_config.format.schema`, `tools.0.custom.input_schema`)."""
    _Checker(schema, path).check(schema)
