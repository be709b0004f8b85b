"""Tool calls in the Hermes / Qwen prompt style, for local models that read text.

Tool definitions go into the system prompt inside `<tools>...</tools>`, one JSON
function signature per line; a call is `<tool_call>\\n{"name": ..., "arguments":
{...}}\\n</tool_call>` in the assistant's turn; a result comes back in the next
user turn as `<tool_response>\\n...\\n</tool_response>`. This is the format Qwen's
and Hermes' chat templates use, so a GGUF whose own template renders tools this
way gets its own rendering, and any other (SmolLM2's has no tool support) gets
this one around its plain role markup.

`CallSplitter` reads the model's output back into neutral events: text, or one
call whose input JSON is streamed as it is generated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from parley.core.cache_marks import part_marks
from parley.core.generation import (
    CacheMark,
    DocumentPart,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Turn,
)

CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
# The fixed head of a generated call; the grammar emits exactly this before the name.
NAME_HEAD = '{"name": "'
ARGUMENTS_HEAD = '", "arguments": '

_INSTRUCTIONS = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n{signatures}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def function_signature(tool: ToolSpec) -> dict[str, Any]:
    """A tool as the OpenAI-style function object these templates expect."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = dict(tool.input_schema)
    return {"type": "function", "function": function}


def choice_note(choice: ToolChoice) -> str:
    """One line telling the model what the caller's tool_choice asks of it."""
    if choice.mode == "none":
        return "Do not call any function now; answer in plain text."
    if choice.mode == "any":
        return "You must call one of the functions."
    if choice.mode == "tool":
        return f"You must call the function {choice.name}."
    return ""


def tools_system_text(tools: tuple[ToolSpec, ...], choice: ToolChoice) -> str:
    signatures = "\n".join(json.dumps(function_signature(t), ensure_ascii=False) for t in tools)
    text = _INSTRUCTIONS.format(signatures=signatures)
    note = choice_note(choice)
    return f"{text}\n\n{note}" if note else text


def call_text(call: ToolCall) -> str:
    body = json.dumps({"name": call.name, "arguments": dict(call.input)}, ensure_ascii=False)
    return f"{CALL_OPEN}{body}{CALL_CLOSE}"


def result_body(result: ToolResult) -> str:
    if result.is_error:
        return f"Error: {result.text}" if result.text else "Error"
    return result.text


def result_text(result: ToolResult) -> str:
    return f"<tool_response>\n{result_body(result)}\n</tool_response>"


def turn_text(turn: Turn) -> str:
    """A turn's content with its calls and results written out in this style."""
    pieces: list[str] = []
    for part in turn.parts:
        if isinstance(part, ToolCall):
            pieces.append(call_text(part))
        elif isinstance(part, ToolResult):
            pieces.append(result_text(part))
        elif isinstance(part, TextPart | DocumentPart):
            pieces.append(part.text)
    return "\n".join(pieces) if turn.tool_calls or turn.tool_results else turn.text


def marked_turn_text(turn: Turn, mark: Callable[[CacheMark], str]) -> str:
    """`turn_text` with `mark(...)` written just after each part that carries a cache
    breakpoint (a mark on a part the text leaves out, an image, goes where it would
    be). Without the marks' text it is exactly `turn_text(turn)`."""
    calls = bool(turn.tool_calls or turn.tool_results)
    pieces: list[str] = []
    pending = ""  # marks of parts with no text of their own, for the previous piece
    for part in turn.parts:
        piece: str | None = None
        if isinstance(part, ToolCall):
            piece = call_text(part) if calls else None
        elif isinstance(part, ToolResult):
            piece = result_text(part) if calls else None
        elif isinstance(part, TextPart | DocumentPart):
            piece = part.text
        marks = "".join(mark(m) for m in part_marks(part))
        if piece is None:
            if pieces:
                pieces[-1] += marks
            else:
                pending += marks
            continue
        pieces.append(pending + piece + marks)
        pending = ""
    text = ("\n" if calls else "\n\n").join(pieces)
    return text + pending


def template_message(turn: Turn) -> dict[str, Any]:
    """A turn as the OpenAI-style message a tool-aware template (Qwen) expects."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.text}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": dict(c.input)},
            }
            for c in turn.tool_calls
        ]
    return message


def template_messages(turn: Turn) -> list[dict[str, Any]]:
    """Tool results become role `tool` messages, before any text of the same turn."""
    if turn.role != "user" or not turn.tool_results:
        return [template_message(turn)]
    messages: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": r.tool_use_id,
            "name": r.name,
            "content": result_body(r),
        }
        for r in turn.tool_results
    ]
    if turn.text:
        messages.append({"role": "user", "content": turn.text})
    return messages


# --- reading a generated call back --------------------------------------------------


@dataclass(frozen=True)
class TextOut:
    text: str


@dataclass(frozen=True)
class CallStartOut:
    name: str


@dataclass(frozen=True)
class InputOut:
    partial_json: str


SplitEvent = TextOut | CallStartOut | InputOut
_State = Literal["undecided", "text", "head", "arguments"]


class CallSplitter:
    """Turns the text a model generates into text, or one call with streamed input.

    `forced`: the prompt already ends with `<tool_call>\\n`, so the output is the
    call's JSON. Otherwise the output is text unless it begins with `<tool_call>`.
    The call's JSON is `{"name": "NAME", "arguments": ARGS}` exactly as the grammar
    writes it; ARGS is passed on as it arrives, except for a trailing run of spaces
    and closing braces, which is held back because its last brace closes the
    wrapper, not the arguments.
    """

    def __init__(self, *, forced: bool) -> None:
        self._state: _State = "head" if forced else "undecided"
        self._buffer = ""
        self._held = ""
        self._arguments = ""
        self.name: str | None = None

    def feed(self, text: str) -> list[SplitEvent]:
        if self._state == "text":
            return [TextOut(text)] if text else []
        if self._state == "arguments":
            return self._arguments_out(text)
        self._buffer += text
        if self._state == "undecided":
            if CALL_OPEN.startswith(self._buffer):
                return []
            if not self._buffer.startswith(CALL_OPEN):
                self._state = "text"
                out, self._buffer = self._buffer, ""
                return [TextOut(out)]
            self._state = "head"
            self._buffer = self._buffer[len(CALL_OPEN) :]
        return self._head_out()

    def _head_out(self) -> list[SplitEvent]:
        start = self._buffer.find(NAME_HEAD)
        end = self._buffer.find(ARGUMENTS_HEAD, start + len(NAME_HEAD)) if start >= 0 else -1
        if end < 0:
            return []
        self.name = self._buffer[start + len(NAME_HEAD) : end]
        rest = self._buffer[end + len(ARGUMENTS_HEAD) :]
        self._buffer = ""
        self._state = "arguments"
        return [CallStartOut(self.name), *self._arguments_out(rest)]

    def _arguments_out(self, text: str) -> list[SplitEvent]:
        pending = self._held + text
        kept = pending.rstrip(" }")
        self._held = pending[len(kept) :]
        self._arguments += kept
        return [InputOut(kept)] if kept else []

    def finish(self) -> list[SplitEvent]:
        """What is still held back, once generation has stopped."""
        if self._state == "undecided":
            self._state = "text"
            return [TextOut(self._buffer)] if self._buffer else []
        if self._state != "arguments":
            return []
        tail = self._held
        closed = tail.rstrip(" ")
        if closed.endswith("}") and _parses(self._arguments + closed[:-1].rstrip(" ")):
            tail = closed[:-1].rstrip(" ")  # the wrapper's own closing brace
        self._held = ""
        self._arguments += tail
        return [InputOut(tail)] if tail else []


def _parses(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, Mapping)
