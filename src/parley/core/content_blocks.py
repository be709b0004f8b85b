"""Content blocks of a message, opened and closed one after another (api-spec §6.2:
indices 0..n-1, never interleaved; the SDKs rely on it, §7).

The writer yields the stream events and, as it goes, keeps the blocks they add up
to, so a plain response is the same blocks without re-reading the events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic_core import from_json

from parley.core.ids import tool_use_id
from parley.errors import InternalServerError
from parley.protocol.responses import Citation, ContentBlock, TextBlock, ToolUseBlock
from parley.protocol.stream import (
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    PingEvent,
    StreamEvent,
    TextDelta,
)

log = logging.getLogger(__name__)


CallCheck = Callable[[ToolUseBlock], None]


class BlockWriter:
    """`content` is appended to in place; `on_call` sees each call whose input is
    complete."""

    def __init__(self, content: list[ContentBlock], on_call: CallCheck | None = None) -> None:
        self.content = content
        self._on_call = on_call
        self._kind: str | None = None
        self._input = ""
        self.calls = 0

    def _open(self, block: TextBlock | ToolUseBlock) -> list[StreamEvent]:
        events = self.close()
        self._kind = block.type
        index = len(self.content)
        events.append(ContentBlockStartEvent(index=index, content_block=block))
        self.content.append(block.model_copy())
        if index == 0:
            events.append(PingEvent())  # the real API pings right after the first block starts
        return events

    def text(self, text: str) -> list[StreamEvent]:
        if not text:
            return []
        events = [] if self._kind == "text" else self._open(TextBlock(text=""))
        block = self.content[-1]
        assert isinstance(block, TextBlock)
        block.text += text
        events.append(
            ContentBlockDeltaEvent(index=len(self.content) - 1, delta=TextDelta(text=text))
        )
        return events

    def citation(self, citation: Citation) -> list[StreamEvent]:
        """Add a citation to the open text block (api-spec §6.3 `citations_delta`)."""
        events = [] if self._kind == "text" else self._open(TextBlock(text=""))
        block = self.content[-1]
        assert isinstance(block, TextBlock)
        block.citations = [*(block.citations or []), citation]
        events.append(
            ContentBlockDeltaEvent(
                index=len(self.content) - 1, delta=CitationsDelta(citation=citation)
            )
        )
        return events

    def tool_call(self, name: str, call_id: str | None) -> list[StreamEvent]:
        # The block starts with `input: {}`; the input follows as input_json_delta
        # fragments, the first one empty as the real API sends it (api-spec §6.3).
        events = self._open(ToolUseBlock(id=call_id or tool_use_id(), name=name, input={}))
        self._input = ""
        self.calls += 1
        events.append(
            ContentBlockDeltaEvent(
                index=len(self.content) - 1, delta=InputJSONDelta(partial_json="")
            )
        )
        return events

    def tool_input(self, partial_json: str) -> list[StreamEvent]:
        if self._kind != "tool_use":
            log.error("engine sent tool input outside a tool call")
            raise InternalServerError("Internal server error")
        if not partial_json:
            return []
        self._input += partial_json
        return [
            ContentBlockDeltaEvent(
                index=len(self.content) - 1, delta=InputJSONDelta(partial_json=partial_json)
            )
        ]

    def close(self, *, truncated: bool = False) -> list[StreamEvent]:
        """Close the open block. A call's input must be one JSON object, unless the
        reply was cut off inside it (`truncated`)."""
        if self._kind is None:
            return []
        if self._kind == "tool_use":
            if not truncated and not _is_object(self._input):
                log.error("engine sent a tool input that is not a JSON object: %r", self._input)
                raise InternalServerError("Internal server error")
            block = self.content[-1]
            assert isinstance(block, ToolUseBlock)
            block.input = parse_input(self._input)
            if not truncated and self._on_call is not None:
                self._on_call(block)
        self._kind = None
        return [ContentBlockStopEvent(index=len(self.content) - 1)]


def _is_object(text: str) -> bool:
    if not text.strip():
        return True  # no fragments: a call without arguments
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def parse_input(text: str) -> dict[str, Any]:
    """A call's input from its fragments; a cut-off input keeps what parses, as the
    SDKs' partial-JSON parsing does."""
    if not text.strip():
        return {}
    try:
        value = from_json(text, allow_partial=True)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
