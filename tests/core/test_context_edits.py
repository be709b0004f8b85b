"""Context-management edits over neutral turns (core/context_edits.py)."""

from __future__ import annotations

from typing import Any

import pytest

from parley.core.context_edits import (
    CLEARED,
    apply_context_edits,
    check_context_management,
)
from parley.core.generation import ThinkingPart, ToolCall, ToolResult, Turn
from parley.errors import InvalidRequestError
from parley.protocol.requests import ContextManagement, ThinkingAdaptive, ThinkingDisabled


def loop(calls: int, name: str = "grep") -> tuple[Turn, ...]:
    turns = [Turn.of("user", "start")]
    for i in range(calls):
        call = ToolCall(f"toolu_{i}", name if i % 2 == 0 else "read", {"q": "x" * 40})
        turns.append(Turn("assistant", (ThinkingPart(f"step {i}", "sig"), call)))
        turns.append(Turn("user", (ToolResult(call.id, call.name, (), False),)))
    return tuple(turns)


async def chars(turns: tuple[Turn, ...]) -> int:
    """A stand-in tokenizer: one token per character of inputs and results."""
    total = 0
    for turn in turns:
        for call in turn.tool_calls:
            total += len(call.input_json)
        for result in turn.tool_results:
            total += len(result.text)
    return total


def edits(*items: dict[str, Any]) -> ContextManagement:
    return ContextManagement.model_validate({"edits": list(items)})


async def run(turns: tuple[Turn, ...], *items: dict[str, Any]) -> Any:
    config = edits(*items)
    checked = check_context_management(config, ThinkingAdaptive(type="adaptive"))
    return await apply_context_edits(turns, checked, chars)


async def test_below_the_trigger_nothing_is_cleared() -> None:
    turns = loop(6)
    result = await run(turns, {"type": "clear_tool_uses_20250919"})
    assert result.turns == turns
    assert [e.model_dump() for e in result.applied] == [
        {
            "type": "clear_tool_uses_20250919",
            "cleared_input_tokens": 0,
            "cleared_tool_uses": 0,
        }
    ]


async def test_the_oldest_uses_beyond_keep_are_cleared() -> None:
    turns = loop(6)
    result = await run(
        turns,
        {
            "type": "clear_tool_uses_20250919",
            "trigger": {"type": "tool_uses", "value": 5},
            "keep": {"type": "tool_uses", "value": 2},
            "clear_tool_inputs": True,
        },
    )
    cleared = result.applied[0]
    assert cleared.cleared_tool_uses == 4
    assert cleared.cleared_input_tokens == await chars(turns) - await chars(result.turns)
    results = [r for t in result.turns for r in t.tool_results]
    assert [r.text for r in results] == [CLEARED] * 4 + ["", ""]
    inputs = [dict(c.input) for t in result.turns for c in t.tool_calls]
    assert inputs[:4] == [{}] * 4
    assert inputs[4:] == [{"q": "x" * 40}] * 2


async def test_excluded_tools_and_inputs_kept() -> None:
    result = await run(
        loop(6),
        {
            "type": "clear_tool_uses_20250919",
            "trigger": {"type": "input_tokens", "value": 10},
            "keep": {"type": "tool_uses", "value": 0},
            "exclude_tools": ["read"],
        },
    )
    assert result.applied[0].cleared_tool_uses == 3  # the three grep calls
    calls = [c for t in result.turns for c in t.tool_calls]
    assert all(c.input == {"q": "x" * 40} for c in calls)  # inputs kept by default


async def test_clear_at_least_holds_back_a_small_clear() -> None:
    turns = loop(4)
    result = await run(
        turns,
        {
            "type": "clear_tool_uses_20250919",
            "trigger": {"type": "tool_uses", "value": 1},
            "keep": {"type": "tool_uses", "value": 1},
            "clear_tool_inputs": True,
            "clear_at_least": {"type": "input_tokens", "value": 10_000},
        },
    )
    assert result.turns == turns
    assert result.applied[0].cleared_tool_uses == 0


async def test_clear_thinking_keeps_the_latest_turns() -> None:
    turns = loop(3)
    result = await run(
        turns, {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}
    )
    assert result.applied[0].cleared_thinking_turns == 2
    kept = [p for t in result.turns for p in t.parts if isinstance(p, ThinkingPart)]
    assert [p.thinking for p in kept] == ["step 2"]
    everything = await run(turns, {"type": "clear_thinking_20251015", "keep": "all"})
    assert everything.turns == turns
    assert everything.applied[0].cleared_thinking_turns == 0


@pytest.mark.parametrize(
    ("item", "thinking", "message"),
    [
        (
            {"type": "clear_thinking_20251015"},
            ThinkingDisabled(type="disabled"),
            "`clear_thinking_20251015` strategy requires `thinking` to be enabled",
        ),
        (
            {"type": "compact_20260112"},
            None,
            "context_management.edits.0: the `compact_20260112` strategy is not supported "
            "by this model.",
        ),
    ],
)
def test_refused_edits(item: dict[str, Any], thinking: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_context_management(edits(item), thinking)
    assert caught.value.message == message
