"""Tools on an OpenAI-compatible server, whatever the server can do with them.

The request side picks one of four reply shapes from the flavor's facts
(engines/openai_flavors.py) and the caller's tool_choice; the reply side turns
what comes back into the neutral events the shape promises:

- "native": the server takes `tools`/`tool_choice` and streams `tool_calls`;
- "text_calls": the tools are described in the system prompt in the Hermes style,
  and calls are read out of the text (`hermes.CallSplitter`);
- "forced_json": tool_choice any/tool on a server that does not enforce `required`:
  structured output constrains the reply to one `{"name", "arguments"}` object,
  which becomes the call;
- "plain": no tools, or tool_choice none where the tools are only text.

Under a forced choice the client must get a call, never prose (api-spec §5.4): text
before the call is dropped, and a reply that ends without one is an error.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal

from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ToolCallStart,
    ToolInputChunk,
    ToolSpec,
)
from parley.engines.hermes import (
    CALL_CLOSE,
    CallSplitter,
    CallStartOut,
    InputOut,
    TextOut,
    tools_system_text,
)
from parley.engines.openai_flavors import Flavor
from parley.errors import InternalServerError

log = logging.getLogger(__name__)

ReplyShape = Literal["plain", "native", "text_calls", "forced_json"]
# The tag that ends a call written as text; the request stops the reply there.
CALL_END = CALL_CLOSE.strip()


def reply_shape(request: GenerationRequest, flavor: Flavor) -> ReplyShape:
    if not request.tools:
        return "plain"
    choice = request.tool_choice
    if choice.required and flavor.force_tool != "tool_choice":
        return "forced_json"
    if flavor.tool_format == "text":
        return "plain" if choice.mode == "none" else "text_calls"
    return "native"


def system_addition(request: GenerationRequest, shape: ReplyShape, flavor: Flavor) -> str | None:
    """The tools as system-prompt text, when the server is not given them as `tools`."""
    if not request.tools or shape == "native":
        return None
    if shape == "plain" and flavor.tool_format == "native":
        return None
    return tools_system_text(request.tools, request.tool_choice)


# -- the request ---------------------------------------------------------------------------


def call_schema(tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
    """One call to one of `tools`, as the JSON object the reply must be."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [tool.name]},
                "arguments": dict(tool.input_schema),
            },
            "required": ["name", "arguments"],
        }
        for tool in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def forcing_fields(request: GenerationRequest, flavor: Flavor) -> dict[str, Any]:
    """The structured-output fields that make the reply one call to an allowed tool."""
    schema = call_schema(request.tool_choice.allowed(request.tools))
    if flavor.force_tool == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "tool_call", "schema": schema},
        }
    }


# -- the reply -----------------------------------------------------------------------------


def shaped(
    events: AsyncGenerator[EngineEvent, None], shape: ReplyShape, *, forced: bool
) -> AsyncGenerator[EngineEvent, None]:
    """The reply's events as the shape promises them; `forced`: tool_choice any/tool.
    A plain reply is passed on as it is (no layer added on the hot path). Each layer
    closes the one it reads when it is closed itself."""
    if shape == "text_calls":
        events = _text_calls(events, forced=False)
    elif shape == "forced_json":
        events = _json_call(events)
    if forced:
        events = _forced(events)
    return events


async def _text_calls(
    events: AsyncGenerator[EngineEvent, None], *, forced: bool
) -> AsyncGenerator[EngineEvent, None]:
    """Calls written as text (`<tool_call>{...}</tool_call>`) as call events. The reply
    ends at the call's closing tag (the request also stops the server there)."""
    splitter = CallSplitter(forced=forced)
    pending = ""  # text that may be the start of the closing tag
    closed = False
    tokens = 0
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Finished):
                rest = pending.rstrip() if splitter.name is not None else pending
                outs = [] if closed else splitter.feed(rest)
                for out in _split_events([*outs, *splitter.finish()], tokens):
                    yield out
                yield event
                return
            tokens = event.output_tokens
            if not isinstance(event, TextChunk):
                yield event
                continue
            if closed:
                continue
            pending += event.text
            end = pending.find(CALL_END)
            if end >= 0:
                text, pending, closed = pending[:end].rstrip(), "", True
            else:
                held = _closing_start(pending)
                text, pending = pending[: len(pending) - held], pending[len(pending) - held :]
            for out in _split_events(splitter.feed(text) if text else [], tokens):
                yield out


def _closing_start(text: str) -> int:
    """How many trailing characters of `text` may begin the closing tag (with the
    whitespace before it)."""
    body = text.rstrip()
    for size in range(min(len(CALL_END) - 1, len(body)), 0, -1):
        if body.endswith(CALL_END[:size]):
            body = body[:-size]
            break
    return len(text) - len(body.rstrip())


def _split_events(outs: list[TextOut | CallStartOut | InputOut], tokens: int) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    for out in outs:
        if isinstance(out, TextOut):
            if out.text:
                events.append(TextChunk(out.text, tokens))
        elif isinstance(out, CallStartOut):
            events.append(ToolCallStart(out.name, tokens))
        else:
            events.append(ToolInputChunk(out.partial_json, tokens))
    return events


# The head of a forced call, however the server's grammar spaces it.
_CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


async def _json_call(
    events: AsyncGenerator[EngineEvent, None],
) -> AsyncGenerator[EngineEvent, None]:
    """`{"name": N, "arguments": A}` text as a call to N whose input streams as A.

    The arguments pass through as they come, less a trailing run of spaces and
    braces held back (its last brace closes the wrapper). A reply that does not
    start with the name (another key order) is read whole at the end. A server may
    also turn the object into a `tool_calls` delta itself; those pass through.
    """
    buffer = ""
    held = ""
    started = False
    tokens = 0
    async with aclosing(events):
        async for event in events:
            tokens = event.output_tokens
            if isinstance(event, Finished):
                if not started and buffer.strip():
                    for out in _whole_call(buffer, tokens):
                        yield out
                elif started:
                    tail = held.rstrip()
                    if tail.endswith("}"):
                        tail = tail[:-1].rstrip()
                    if tail:
                        yield ToolInputChunk(tail, tokens)
                yield event
                return
            if not isinstance(event, TextChunk):
                yield event
                continue
            if started:
                pending = held + event.text
                kept = pending.rstrip(" \n\t}")
                held = pending[len(kept) :]
                if kept:
                    yield ToolInputChunk(kept, tokens)
                continue
            buffer += event.text
            head = _CALL_HEAD.match(buffer)
            if head is None:
                continue
            started = True
            yield ToolCallStart(json.loads(f'"{head.group(1)}"'), tokens)
            rest = buffer[head.end() :]
            kept = rest.rstrip(" \n\t}")
            held = rest[len(kept) :]
            if kept:
                yield ToolInputChunk(kept, tokens)


def _whole_call(text: str, tokens: int) -> list[EngineEvent]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        log.error("a forced tool call came back as something else: %.200s", text)
        raise InternalServerError("Internal server error", headers={"x-should-retry": "true"})
    arguments = value.get("arguments")
    return [
        ToolCallStart(value["name"], tokens),
        ToolInputChunk(json.dumps(arguments if isinstance(arguments, dict) else {}), tokens),
    ]


async def _forced(events: AsyncGenerator[EngineEvent, None]) -> AsyncGenerator[EngineEvent, None]:
    called = False
    async with aclosing(events):
        async for event in events:
            if isinstance(event, ToolCallStart):
                called = True
            elif isinstance(event, TextChunk) and not called:
                continue  # a forced call has no text before it
            elif isinstance(event, Finished) and not called:
                # The server let the model answer in prose despite the forced choice (it
                # ignored `tool_choice`): the client must not get text it did not allow.
                log.error(
                    "upstream answered without the tool call tool_choice required; "
                    "check the backend's `flavor`"
                )
                raise InternalServerError(
                    "Internal server error", headers={"x-should-retry": "false"}
                )
            yield event
