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
from parley.protocol.responses import (
    Citation,
    ContentBlock,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)
from parley.protocol.stream import (
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    PingEvent,
    SignatureDelta,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)

log = logging.getLogger(__name__)


CallCheck = Callable[[ToolUseBlock], None]
Sign = Callable[[str], str]


class BlockWriter:
    """`content` is appended to in place; `on_call` sees each call whose input is
    complete; `sign` signs a finished thinking block's text (core/thinking.py), unless
    the engine passed its upstream's signature; `on_first` is called as the first block
    opens. With `omit_thinking` (`display: omitted`) thinking text is withheld and only
    the signature is sent. Without `emit` the blocks are built and no event is: a plain
    response is the blocks alone."""

    def __init__(
        self,
        content: list[ContentBlock],
        on_call: CallCheck | None = None,
        sign: Sign | None = None,
        *,
        omit_thinking: bool = False,
        emit: bool = True,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        self.content = content
        self._on_call = on_call
        self._sign = sign
        self._omit = omit_thinking
        self._emit = emit
        self._on_first = on_first
        self._kind: str | None = None
        self._input = ""
        self._signature: str | None = None
        self.calls = 0

    def _open(
        self, block: TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock
    ) -> list[StreamEvent]:
        events = self.close()
        self._kind = block.type
        index = len(self.content)
        if index == 0 and self._on_first is not None:
            self._on_first()
        if not self._emit:
            self.content.append(block)
            return events
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
        if self._emit:
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
        if self._emit:
            events.append(
                ContentBlockDeltaEvent(
                    index=len(self.content) - 1, delta=CitationsDelta(citation=citation)
                )
            )
        return events

    def thinking(self, text: str) -> list[StreamEvent]:
        if self._kind == "thinking":
            events: list[StreamEvent] = []
        else:
            events = self._open(ThinkingBlock(thinking="", signature=""))
            self._signature = None
        if not text or self._omit:
            return events
        block = self.content[-1]
        assert isinstance(block, ThinkingBlock)
        block.thinking += text
        if self._emit:
            events.append(
                ContentBlockDeltaEvent(
                    index=len(self.content) - 1, delta=ThinkingDelta(thinking=text)
                )
            )
        return events

    def signature(self, signature: str) -> list[StreamEvent]:
        """The open thinking block's signature, from the engine's upstream."""
        if self._kind != "thinking":
            log.error("engine sent a thinking signature outside a thinking block")
            raise InternalServerError("Internal server error")
        self._signature = signature
        return []

    def redacted_thinking(self, data: str) -> list[StreamEvent]:
        # Sent whole in its content_block_start (api-spec §6.3).
        events = self._open(RedactedThinkingBlock(data=data))
        events += self.close()
        return events

    def tool_call(self, name: str, call_id: str | None) -> list[StreamEvent]:
        # The block starts with `input: {}`; the input follows as input_json_delta
        # fragments, the first one empty as the real API sends it (api-spec §6.3).
        events = self._open(ToolUseBlock(id=call_id or tool_use_id(), name=name, input={}))
        self._input = ""
        self.calls += 1
        if self._emit:
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
        if not self._emit:
            return []
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
        events: list[StreamEvent] = []
        if self._kind == "thinking":
            signed = self._close_thinking()
            if self._emit:
                events.append(signed)
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
        if self._emit:
            events.append(ContentBlockStopEvent(index=len(self.content) - 1))
        return events

    def _close_thinking(self) -> StreamEvent:
        # One signature_delta just before content_block_stop (api-spec §6.3).
        block = self.content[-1]
        assert isinstance(block, ThinkingBlock)
        signature = self._signature
        if signature is None:
            if self._sign is None:
                log.error("a thinking block without a signature and no key to sign it")
                raise InternalServerError("Internal server error")
            signature = self._sign(block.thinking)
        block.signature = signature
        return ContentBlockDeltaEvent(
            index=len(self.content) - 1, delta=SignatureDelta(signature=signature)
        )


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
