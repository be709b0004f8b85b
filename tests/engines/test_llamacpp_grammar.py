"""The GBNF that constrains tool calls: digit ranges checked exhaustively against
Python, and the call grammar's shape (no model needed)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from parley.engines.llamacpp.grammar import (
    NoGrammarError,
    bounded_number,
    call_grammar,
    integer_range,
)

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{\d+(?:,\d+)?\}|[()|?*+]|space|\s+')


def to_regex(gbnf: str) -> re.Pattern[str]:
    """The small GBNF subset the range builders write, as a Python regex."""
    out = []
    position = 0
    while position < len(gbnf):
        match = _TOKEN.match(gbnf, position)
        assert match is not None, gbnf[position:]
        token = match.group(0)
        position = match.end()
        if token.isspace():
            continue
        if token.startswith('"'):
            out.append(re.escape(json.loads(token)))
        elif token == "space":
            out.append(" ?")
        else:
            out.append(token)
    return re.compile("".join(out))


def allowed(expression: str, values: range) -> set[int]:
    pattern = to_regex(expression)
    return {v for v in values if pattern.fullmatch(str(v))}


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (0, None),
        (1, 14),
        (5, 123),
        (0, 9),
        (10, 10),
        (-20, 7),
        (-300, -17),
        (None, -3),
        (None, 40),
        (99, 1001),
        (7, None),
    ],
)
def test_integer_ranges_match_exactly(lo: int | None, hi: int | None) -> None:
    values = range(-1200, 1200)
    expected = {v for v in values if (lo is None or v >= lo) and (hi is None or v <= hi)}
    assert allowed(integer_range(lo, hi), values) == expected
    pattern = to_regex(integer_range(lo, hi))
    for text in ("007", "-0", "+1", "1.0", ""):
        assert not pattern.fullmatch(text), text


NUMBER_SAMPLES = [
    *(str(i) for i in range(-60, 60)),
    *(f"{i}.{d}" for i in range(-60, 60) for d in ("0", "5", "25", "999")),
    *(f"-0.{d}" for d in ("0", "5", "999")),
]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "number", "minimum": 5, "maximum": 30},
        {"type": "number", "minimum": -1.5, "maximum": 2.5},
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "number", "minimum": -40, "exclusiveMaximum": -10.5},
        {"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 4},
        {"type": "number", "maximum": -3},
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 150},
        {"type": "integer", "minimum": 0.5, "maximum": 3.5},
    ],
)
def test_bounded_numbers_never_leave_the_range(schema: dict[str, Any]) -> None:
    pattern = to_regex(bounded_number(schema))
    accepted = [s for s in NUMBER_SAMPLES if pattern.fullmatch(s)]
    assert accepted, schema
    for text in accepted:
        value = float(text)
        assert value >= schema.get("minimum", float("-inf")), text
        assert value <= schema.get("maximum", float("inf")), text
        assert value > schema.get("exclusiveMinimum", float("-inf")), text
        assert value < schema.get("exclusiveMaximum", float("inf")), text
        if schema["type"] == "integer":
            assert "." not in text


def test_a_range_without_integers_still_has_a_value() -> None:
    schema = {"type": "number", "minimum": 0.2, "maximum": 0.7}
    assert to_regex(bounded_number(schema)).fullmatch("0.45")


def test_forced_grammar_is_only_calls_to_the_allowed_tools() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    grammar = call_grammar([("find", schema), ("other", {"type": "object"})], allow_text=False)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == "call"
    assert rules["call"].startswith('"{\\"name\\": \\"" (')
    assert '"find\\", \\"arguments\\": " tool0-args "}"' in rules["call"]
    assert '"other\\", \\"arguments\\": "' in rules["call"]
    assert "text" not in rules


def test_auto_grammar_allows_text_that_does_not_start_a_call() -> None:
    grammar = call_grammar([("find", {"type": "object"})], allow_text=True)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == '"<tool_call>\\n" call | text'
    # The first alternative refuses "<", then each next character of "<tool_call>".
    assert rules["text"].startswith('([^<] | "<" ([^t] | "t" ([^o]')


def test_refs_of_different_tools_stay_apart() -> None:
    def tool(kind: str) -> dict[str, Any]:
        item = {"type": "object", "properties": {"v": {"type": kind}}, "required": ["v"]}
        return {
            "type": "object",
            "$defs": {"Item": item},
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "required": ["item"],
        }

    rules = dict(
        line.split(" ::= ", 1)
        for line in call_grammar(
            [("a", tool("integer")), ("b", tool("boolean"))], allow_text=False
        ).splitlines()
    )
    assert "tool0-Item" in rules
    assert "tool1-Item" in rules
    assert rules["tool0-Item"] != rules["tool1-Item"]


def test_unsupported_pattern_falls_back_without_it() -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "(?<=x)y"}},
        "required": ["code"],
    }
    grammar = call_grammar([("t", schema)], allow_text=False)
    assert "tool0-args-code-kv" in grammar


def test_free_strings_and_arrays_are_bounded() -> None:
    schema = {
        "type": "object",
        "properties": {
            "q": {"type": "string", "minLength": 2},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
            "code": {"type": "string", "maxLength": 9},
        },
        "required": ["q", "tags", "code"],
    }
    rules = dict(
        line.split(" ::= ", 1)
        for line in call_grammar([("t", schema)], allow_text=False).splitlines()
    )
    assert rules["tool0-args-q"] == '"\\"" char{2,200} "\\"" space'
    assert rules["tool0-args-tags"].count("tool0-args-tags-item") == 32
    assert "char{" not in rules["tool0-args-code"]  # its own maxLength applies


def test_strings_cannot_hold_raw_control_characters() -> None:
    grammar = call_grammar([("t", {"type": "object"})], allow_text=False)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["char"].startswith('[^"\\\\\\x7F\\x00-\\x1F] | ')


OUTPUT = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["answer", "n"],
    "additionalProperties": False,
}


def test_an_output_format_alone_is_the_whole_reply() -> None:
    rules = dict(
        line.split(" ::= ", 1)
        for line in call_grammar([], allow_text=True, output_schema=OUTPUT).splitlines()
    )
    assert rules["root"] == "text"
    assert rules["text"] == "output-value"
    assert "call" not in rules


def test_with_tools_the_reply_is_a_call_or_the_format() -> None:
    rules = dict(
        line.split(" ::= ", 1)
        for line in call_grammar(
            [("find", {"type": "object"})], allow_text=True, output_schema=OUTPUT
        ).splitlines()
    )
    assert rules["root"] == '"<tool_call>\\n" call | text'
    assert rules["text"] == "output-value"


def test_exact_schemas_are_never_relaxed() -> None:
    # A tool that is not strict falls back without the pattern (test above); a strict
    # tool and an output format are refused instead, so their guarantee holds.
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "(?<=x)y"}},
        "required": ["code"],
    }
    with pytest.raises(NoGrammarError):
        call_grammar([("t", schema, True)], allow_text=False)
    with pytest.raises(NoGrammarError):
        call_grammar([], allow_text=True, output_schema=schema)
