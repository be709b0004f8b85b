"""Context management (beta `context-management-2025-06-27`): edits applied to the
neutral conversation before the prompt is built, and what the response reports.

- `clear_tool_uses_20250919`: once the trigger is reached (input tokens, default
  100,000, or a number of tool uses), the oldest tool uses beyond the `keep` most
  recent (default 3) have their results replaced by a short placeholder, and with
  `clear_tool_inputs` their inputs emptied too; tools in `exclude_tools` are never
  cleared. With `clear_at_least`, nothing is cleared unless that many input tokens
  would go.
- `clear_thinking_20251015`: thinking blocks of all but the `keep` most recent
  assistant turns that have some are dropped (default: keep 1; `"all"` keeps
  every one). It needs thinking on (`enabled` or `adaptive`), as the API says.

The response's `context_management.applied_edits` lists every edit with what it
cleared (zero when the trigger was not reached), as the API reports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from parley.core.generation import TextPart, ThinkingPart, ToolCall, ToolResult, Turn
from parley.errors import InvalidRequestError
from parley.protocol.requests import (
    ClearThinkingEdit,
    ClearToolUsesEdit,
    CompactEdit,
    ContextEdit,
    ContextManagement,
    InputTokensValue,
    ThinkingAdaptive,
    ThinkingConfig,
    ThinkingEnabled,
    ThinkingTurnsValue,
)
from parley.protocol.responses import AppliedEdit

DEFAULT_TRIGGER_TOKENS = 100_000
DEFAULT_KEEP_TOOL_USES = 3
DEFAULT_KEEP_THINKING_TURNS = 1
CLEARED = "[Tool result cleared to save context]"

Measure = Callable[[tuple[Turn, ...]], Awaitable[int]]


@dataclass(frozen=True)
class EditedTurns:
    turns: tuple[Turn, ...]
    applied: list[AppliedEdit]
    original_input_tokens: int | None = None


def check_context_management(
    config: ContextManagement | None, thinking: ThinkingConfig | None
) -> list[ContextEdit]:
    edits = list(config.edits or ()) if config is not None else []
    for i, edit in enumerate(edits):
        if isinstance(edit, CompactEdit):
            raise InvalidRequestError(
                f"context_management.edits.{i}: the `compact_20260112` strategy is not "
                "supported by this model."
            )
        if isinstance(edit, ClearThinkingEdit) and not isinstance(
            thinking, ThinkingEnabled | ThinkingAdaptive
        ):
            raise InvalidRequestError(
                "`clear_thinking_20251015` strategy requires `thinking` to be enabled"
            )
    return edits


async def apply_context_edits(
    turns: tuple[Turn, ...], edits: Sequence[ContextEdit], measure: Measure
) -> EditedTurns:
    """`measure` gives the prompt's input tokens for some turns (the engine's count)."""
    applied: list[AppliedEdit] = []
    original: int | None = None
    for edit in edits:
        if isinstance(edit, ClearThinkingEdit):
            edited, cleared = _clear_thinking(turns, edit)
            tokens = 0
            if cleared:
                # A local prompt leaves earlier thinking out, so this is often zero;
                # an Anthropic upstream is sent it, and counts it.
                tokens = max(0, await measure(turns) - await measure(edited))
            turns = edited
            applied.append(
                AppliedEdit(
                    type=edit.type, cleared_thinking_turns=cleared, cleared_input_tokens=tokens
                )
            )
        elif isinstance(edit, ClearToolUsesEdit):
            turns, result, size = await _clear_tool_uses(turns, edit, measure)
            original = original if original is not None else size
            applied.append(result)
    return EditedTurns(turns, applied, original)


def _clear_thinking(
    turns: tuple[Turn, ...], edit: ClearThinkingEdit
) -> tuple[tuple[Turn, ...], int]:
    keep = edit.keep
    if keep == "all" or (keep is not None and not isinstance(keep, ThinkingTurnsValue)):
        return turns, 0
    count = keep.value if isinstance(keep, ThinkingTurnsValue) else DEFAULT_KEEP_THINKING_TURNS
    thinking = [
        i
        for i, t in enumerate(turns)
        if t.role == "assistant" and any(isinstance(p, ThinkingPart) for p in t.parts)
    ]
    doomed = set(thinking[: max(0, len(thinking) - count)])
    if not doomed:
        return turns, 0
    edited = tuple(
        replace(t, parts=tuple(p for p in t.parts if not isinstance(p, ThinkingPart)))
        if i in doomed
        else t
        for i, t in enumerate(turns)
    )
    return edited, len(doomed)


async def _clear_tool_uses(
    turns: tuple[Turn, ...], edit: ClearToolUsesEdit, measure: Measure
) -> tuple[tuple[Turn, ...], AppliedEdit, int | None]:
    none = AppliedEdit(type=edit.type, cleared_tool_uses=0, cleared_input_tokens=0)
    excluded = set(edit.exclude_tools or ())
    calls = [c for t in turns if t.role == "assistant" for c in t.tool_calls]
    keep = edit.keep.value if edit.keep is not None else DEFAULT_KEEP_TOOL_USES
    candidates = [c for c in calls[: max(0, len(calls) - keep)] if c.name not in excluded]
    trigger = edit.trigger
    size: int | None = None
    if isinstance(trigger, InputTokensValue) or trigger is None:
        limit = trigger.value if trigger is not None else DEFAULT_TRIGGER_TOKENS
        size = await measure(turns)
        if size < limit:
            return turns, none, size
    elif len(calls) < trigger.value:
        return turns, none, size
    if not candidates:
        return turns, none, size
    ids = {c.id for c in candidates}
    inputs = edit.clear_tool_inputs
    edited = tuple(_cleared(t, ids, inputs) for t in turns)
    before = size if size is not None else await measure(turns)
    after = await measure(edited)
    if edit.clear_at_least is not None and before - after < edit.clear_at_least.value:
        return turns, none, before
    return (
        edited,
        AppliedEdit(
            type=edit.type,
            cleared_tool_uses=len(ids),
            cleared_input_tokens=max(0, before - after),
        ),
        before,
    )


def _cleared(turn: Turn, ids: set[str], inputs: bool | list[str] | None) -> Turn:
    parts = []
    for part in turn.parts:
        if isinstance(part, ToolResult) and part.tool_use_id in ids:
            part = replace(part, content=(TextPart(CLEARED),))
        elif isinstance(part, ToolCall) and part.id in ids and _clears_input(part.name, inputs):
            empty: Mapping[str, Any] = {}
            part = replace(part, input=empty)
        parts.append(part)
    return replace(turn, parts=tuple(parts))


def _clears_input(name: str, inputs: bool | list[str] | None) -> bool:
    if isinstance(inputs, list):
        return name in inputs
    return bool(inputs)
