"""GBNF grammars that make llama.cpp write tool calls whose input matches the schema.

The grammar covers the whole call as `engines.hermes` reads it back:
`{"name": "NAME", "arguments": ARGS}`, one alternative per tool the call may go to,
ARGS generated from that tool's input_schema by llama-cpp-python's JSON-schema
converter. Under tool_choice auto the grammar also allows plain text, as long as
it does not begin with `<tool_call>`: the model's first characters decide.

What the converter leaves out is filled in or worked around here:
- `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum` on integers and
  numbers (the converter ignores them): exact digit-range rules. Numbers keep a
  fraction only where the whole unit interval fits in the range.
- annotation-only property schemas (`{"description": ...}`), which the converter
  rejects: treated as "any value".
- `$ref` names are kept apart per tool, so two tools may both define `Item`.
- strings without `maxLength` (and without pattern/format/enum) are capped at
  MAX_FREE_STRING characters and arrays without `maxItems` at MAX_FREE_ITEMS items,
  so a small model cannot run away inside one; inputs stay valid, only bounded.
- a schema the converter still cannot turn into a grammar (an unsupported regex in
  `pattern`, say) is retried without `pattern`/`format`, then, failing that,
  generated as any JSON object. Those inputs always parse but may not validate;
  the engine logs when one does not. Keywords with no grammar form at all
  (`not`, `if`/`then`/`else`, `uniqueItems`, `multipleOf`, `patternProperties`,
  string formats other than date/time/date-time/uuid) are not enforced.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from llama_cpp import llama_grammar

from parley.engines.hermes import ARGUMENTS_HEAD, CALL_OPEN, NAME_HEAD

log = logging.getLogger(__name__)

# The converter is untyped; it is used through these names only.
DOTALL: str = llama_grammar.DOTALL
RESERVED_NAMES: set[str] = llama_grammar.RESERVED_NAMES
_SchemaConverter: Any = llama_grammar.SchemaConverter

_ANNOTATIONS = {
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$id",
}
_RELAXED = {"pattern", "format"}
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_MAX_DIGITS = 15  # as the converter's own integral-part rule
# Limits the grammar adds where a schema sets none (documented in the README): a
# 135M model sampling at temperature 1 can repeat itself inside a string or an
# array until max_tokens, which would leave the input unfinished.
MAX_FREE_STRING = 200
MAX_FREE_ITEMS = 32
_HEX = "[0-9a-fA-F]"
_JSON_CHAR = rf'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" {_HEX} {_HEX} {_HEX} {_HEX})'
_STRING_SHAPING = {"pattern", "format", "enum", "const", "maxLength"}


def literal(text: str) -> str:
    return json.dumps(text)


# --- digit ranges ---------------------------------------------------------------------


def _same_length(lo: str, hi: str) -> str:
    """Decimal strings of one length between lo and hi (inclusive), as GBNF."""
    if lo == hi:
        return literal(lo)
    if len(lo) == 1:
        return f"[{lo}-{hi}]"
    if lo[0] == hi[0]:
        return f"{literal(lo[0])} ({_same_length(lo[1:], hi[1:])})"
    rest = len(lo) - 1
    parts = []
    low_full = lo[1:] == "0" * rest
    high_full = hi[1:] == "9" * rest
    first = int(lo[0]) + (0 if low_full else 1)
    last = int(hi[0]) - (0 if high_full else 1)
    if not low_full:
        parts.append(f"{literal(lo[0])} ({_same_length(lo[1:], '9' * rest)})")
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        parts.append(f"{literal(digit) if first == last else digit} [0-9]{{{rest}}}")
    if not high_full:
        parts.append(f"{literal(hi[0])} ({_same_length('0' * rest, hi[1:])})")
    return " | ".join(f"({p})" for p in parts)


def natural_range(lo: int, hi: int | None) -> str:
    """Non-negative integers in [lo, hi] (hi None: no upper bound), no leading zeros."""
    parts: list[str] = []
    width = len(str(lo))
    top = len(str(hi)) if hi is not None else _MAX_DIGITS + 1
    for length in range(width, min(top, _MAX_DIGITS + 1) + 1):
        low = max(lo, 10 ** (length - 1) if length > 1 else 0)
        high = 10**length - 1 if hi is None else min(hi, 10**length - 1)
        if hi is None and length > width:
            parts.append(f"[1-9] [0-9]{{{length - 1},{_MAX_DIGITS}}}")
            break
        if low <= high:
            parts.append(_same_length(str(low), str(high)))
    return " | ".join(f"({p})" for p in parts) if parts else ""


def integer_range(lo: int | None, hi: int | None) -> str:
    """Integers in [lo, hi]; None is unbounded."""
    parts: list[str] = []
    if hi is None or hi >= 0:
        parts.append(natural_range(max(lo, 0) if lo is not None else 0, hi))
    if lo is None or lo < 0:
        low = max(1, -hi) if hi is not None else 1
        high = -lo if lo is not None else None
        if high is None or low <= high:
            parts.append(f'"-" ({natural_range(low, high)})')
    return " | ".join(f"({p})" for p in parts if p)


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    lo, lo_open = schema.get("minimum"), False
    low_excl = schema.get("exclusiveMinimum")
    if isinstance(low_excl, int | float) and (lo is None or low_excl >= lo):
        lo, lo_open = low_excl, True
    hi, hi_open = schema.get("maximum"), False
    high_excl = schema.get("exclusiveMaximum")
    if isinstance(high_excl, int | float) and (hi is None or high_excl <= hi):
        hi, hi_open = high_excl, True
    return lo, lo_open, hi, hi_open


def _int_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None]:
    lo, lo_open, hi, hi_open = _bounds(schema)
    low = None if lo is None else (math.floor(lo) + 1 if lo_open else math.ceil(lo))
    high = None if hi is None else (math.ceil(hi) - 1 if hi_open else math.floor(hi))
    return low, high


def bounded_number(schema: Mapping[str, Any]) -> str:
    """A GBNF expression for the integer or number values the bounds allow."""
    low, high = _int_bounds(schema)
    if schema.get("type") == "integer":
        if low is not None and high is not None and low > high:
            raise ValueError(f"empty integer range {schema}")
        return f"({integer_range(low, high)}) space"
    lo, _, hi, hi_open = _bounds(schema)
    fraction = '"." [0-9]{1,' + str(_MAX_DIGITS) + "}"
    parts: list[str] = []
    if low is None or high is None or low <= high:
        parts.append(integer_range(low, high))
    # i.f lies in [i, i+1): allowed for i >= low (and i >= 0) when i + 1 <= hi.
    top = None if hi is None else math.floor(hi) - 1
    bottom = max(low if low is not None else 0, 0)
    if top is None or bottom <= top:
        parts.append(f"({natural_range(bottom, top)}) {fraction}")
    # -k.f lies in (-(k+1), -k]: allowed when -(k+1) >= lo and -k is within hi.
    k_top = None if lo is None else math.floor(-lo) - 1
    k_bottom = 0 if hi is None else max(0, math.floor(-hi) + 1 if hi_open else math.ceil(-hi))
    if k_top is None or k_bottom <= k_top:
        parts.append(f'"-" ({natural_range(k_bottom, k_top)}) {fraction}')
    if not parts:  # no integer and no whole unit interval inside: one value that fits
        middle = round(((lo or 0) + (hi or 0)) / 2, 6)
        return f"{literal(json.dumps(middle))} space"
    return "(" + " | ".join(f"({p})" for p in parts) + ") space"


# --- the converter ---------------------------------------------------------------------


class _Converter(_SchemaConverter):  # type: ignore[misc]
    """llama-cpp-python's converter with bounds, untyped schemas and per-tool refs."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self.namespace = ""

    def visit(self, schema: Any, name: str) -> str:
        if isinstance(schema, bool):
            schema = {} if schema else {"not": {}}
        schema = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        kind = schema.get("type")
        if (
            kind in ("integer", "number")
            and not {"enum", "const"} & schema.keys()
            and _BOUNDS & schema.keys()
        ):
            return str(self._add_rule(rule_name, bounded_number(schema)))
        if kind == "string" and not schema.keys() & _STRING_SHAPING:
            # Bounded so that a small model cannot loop inside a string until max_tokens.
            low = int(schema.get("minLength", 0))
            high = max(low, int(schema.get("maxLength", MAX_FREE_STRING)))
            char = self._add_primitive("char", llama_grammar.PRIMITIVE_RULES["char"])
            return str(self._add_rule(rule_name, f'"\\"" {char}{{{low},{high}}} "\\"" space'))
        if kind == "array" and "items" in schema and "maxItems" not in schema:
            schema = {**schema, "maxItems": max(MAX_FREE_ITEMS, schema.get("minItems", 0))}
        if kind is None and not schema.keys() & _SHAPING:
            # No constraint the converter understands (`{"description": ...}`): any value.
            return str(self._add_rule(rule_name, self._add_primitive_value()))
        return str(super().visit(schema, name))

    def _add_primitive(self, name: str, rule: Any) -> str:
        if name == "char":
            # JSON strings cannot hold raw control characters; the converter's rule
            # (`[^"\\]`) lets a newline through, which breaks the input's JSON.
            return str(self._add_rule("char", _JSON_CHAR))
        return str(super()._add_primitive(name, rule))

    def _add_primitive_value(self) -> str:
        return str(self._add_primitive("value", llama_grammar.PRIMITIVE_RULES["value"]))

    def _resolve_ref(self, ref: str) -> str:
        ref_name = f"{self.namespace}-{ref.split('/')[-1]}"
        if ref_name not in self._rules and ref not in self._refs_being_resolved:
            self._refs_being_resolved.add(ref)
            ref_name = self.visit(self._refs[ref], ref_name)
            self._refs_being_resolved.remove(ref)
        return ref_name


_SHAPING = {
    "$ref",
    "oneOf",
    "anyOf",
    "allOf",
    "const",
    "enum",
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "pattern",
    "format",
}


def _relaxed(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _relaxed(v) for k, v in schema.items() if k not in _RELAXED}
    if isinstance(schema, list):
        return [_relaxed(v) for v in schema]
    return schema


class NoGrammarError(ValueError):
    """A schema that must be enforced exactly (an output format, a strict tool) has no
    grammar form."""


def _exact_rule(converter: _Converter, schema: Mapping[str, Any], name: str) -> str:
    converter.namespace = name
    try:
        resolved = converter.resolve_refs(copy.deepcopy(dict(schema)), name)
        return str(converter.visit(resolved, f"{name}-value"))
    except Exception as exc:  # the converter asserts and raises on what it lacks
        raise NoGrammarError(str(exc) or type(exc).__name__) from None


def _arguments_rule(
    converter: _Converter, schema: Mapping[str, Any], index: int, *, strict: bool = False
) -> str:
    if strict:
        return _exact_rule(converter, schema, f"tool{index}")
    attempts = [("as given", schema), ("without pattern/format", _relaxed(schema))]
    for label, candidate in attempts:
        converter.namespace = f"tool{index}"
        saved = dict(converter._rules), dict(converter._refs)
        try:
            resolved = converter.resolve_refs(copy.deepcopy(dict(candidate)), f"tool{index}")
            return converter.visit(resolved, f"tool{index}-args")
        except Exception as exc:  # the converter asserts and raises on what it lacks
            # Drop the half-built rules: one may name a rule that was never added.
            converter._rules, converter._refs = saved
            log.warning("tool input schema %s has no grammar (%s): %r", index, label, exc)
    log.warning("tool input schema %s: generating any JSON object instead", index)
    return str(converter.visit({"type": "object"}, f"tool{index}-any"))


@functools.lru_cache(maxsize=128)
def _reply_grammar(tools_json: str, allow_text: bool, output_json: str) -> str:
    tools: list[tuple[str, dict[str, Any], bool]] = json.loads(tools_json)
    output: dict[str, Any] | None = json.loads(output_json)
    converter = _Converter()
    if tools:
        alternatives = []
        for index, (name, schema, strict) in enumerate(tools):
            arguments = _arguments_rule(converter, schema, index, strict=strict)
            alternatives.append(f'{literal(name + ARGUMENTS_HEAD)} {arguments} "}}"')
        converter._add_rule("call", f"{literal(NAME_HEAD)} ({' | '.join(alternatives)})")
    if output is not None:
        # JSON text never begins with `<`, so it cannot be mistaken for a call.
        value = _exact_rule(converter, output, "output")
        converter._add_rule("text", value)
    elif allow_text:
        converter._add_rule("text", f"{_not_prefixed(CALL_OPEN.strip())} {DOTALL}*")
    if not tools:
        converter._add_rule("root", "text")
    elif allow_text:
        converter._add_rule("root", f"{literal(CALL_OPEN)} call | text")
    else:
        converter._add_rule("root", "call")
    return str(converter.format_grammar())


def call_grammar(
    tools: list[tuple[str, Mapping[str, Any]]] | list[tuple[str, Mapping[str, Any], bool]],
    *,
    allow_text: bool,
    output_schema: Mapping[str, Any] | None = None,
) -> str:
    """GBNF for one call to one of `tools` ((name, input_schema[, strict]) tuples);
    with `allow_text`, for either that (after `<tool_call>\\n`) or a reply, which is
    any text, or JSON valid against `output_schema` when one is given. Without
    tools, only that reply. A strict tool's schema and the output schema are
    enforced exactly: `NoGrammarError` when they cannot be."""
    entries = [(t[0], t[1], bool(t[2]) if len(t) > 2 else False) for t in tools]
    # Key order is kept: it is the order properties are generated in.
    return _reply_grammar(json.dumps(entries), allow_text, json.dumps(output_schema))


def _not_prefixed(word: str) -> str:
    """Strings that part from `word` at some character (so never start with it)."""
    expression = f"[^{_class_char(word[-1])}]"
    for char in reversed(word[:-1]):
        expression = f"[^{_class_char(char)}] | {literal(char)} ({expression})"
    return f"({expression})"


def _class_char(char: str) -> str:
    return "\\" + char if char in "]^-\\" else char
