"""Server-sent events of a streamed message (api-spec §6.3).

Every event's `type` equals its SSE `event:` name; clients dispatch on the
`event:` line (§6.1), and the newest SDKs hand unknown names to user code
(api-version §19.7), so only these names are ever sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from parley.protocol.responses import (
    Citation,
    ContextManagementResponse,
    Message,
    RedactedThinkingBlock,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: Annotated[
        TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock,
        Field(discriminator="type"),
    ]


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class CitationsDelta(BaseModel):
    """Adds one citation to the text block at `index` (api-spec §6.3)."""

    type: Literal["citations_delta"] = "citations_delta"
    citation: Citation


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(BaseModel):
    # One, just before the thinking block's content_block_stop (api-spec §6.3).
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[
        TextDelta | InputJSONDelta | CitationsDelta | ThinkingDelta | SignatureDelta,
        Field(discriminator="type"),
    ]


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(BaseModel):
    stop_reason: StopReason
    stop_sequence: str | None
    # Why output stopped, when there is more to say (a refusal's category); only here,
    # never in message_start (api-version §19.7).
    stop_details: dict[str, Any] | None = None


class MessageDeltaUsage(BaseModel):
    # Cumulative totals, not increments (api-spec §6.3).
    output_tokens: int
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class MessageDeltaEvent(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage
    # Top level, as 2026 captures show it (api-spec §6.3); only when requested.
    context_management: ContextManagementResponse | None = Field(
        default=None, exclude_if=lambda v: v is None
    )


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(BaseModel):
    type: Literal["ping"] = "ping"


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
)
