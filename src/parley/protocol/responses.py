"""Response objects: Message, usage and output blocks (api-spec §5.5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
]


class CacheCreation(BaseModel):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class Usage(BaseModel):
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    output_tokens: int
    service_tier: Literal["standard", "priority", "batch"] = "standard"
    inference_geo: str = "not_available"


class CharLocation(BaseModel):
    """A span of a plain-text document: `cited_text` is `text[start_char_index:
    end_char_index]` (0-based, end exclusive)."""

    type: Literal["char_location"] = "char_location"
    cited_text: str
    document_index: int
    document_title: str | None
    start_char_index: int
    end_char_index: int
    file_id: str | None = None


class PageLocation(BaseModel):
    """Pages of a PDF: 1-based, end exclusive."""

    type: Literal["page_location"] = "page_location"
    cited_text: str
    document_index: int
    document_title: str | None
    start_page_number: int
    end_page_number: int
    file_id: str | None = None


class ContentBlockLocation(BaseModel):
    """Blocks of a content document: 0-based, end exclusive; `cited_text` is the
    blocks' text joined."""

    type: Literal["content_block_location"] = "content_block_location"
    cited_text: str
    document_index: int
    document_title: str | None
    start_block_index: int
    end_block_index: int
    file_id: str | None = None


Citation = Annotated[
    CharLocation | PageLocation | ContentBlockLocation, Field(discriminator="type")
]


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str
    # Only on blocks that cite a document; other text blocks leave the field out, as
    # the API's do (api-spec §5.5).
    citations: list[Citation] | None = Field(default=None, exclude_if=lambda v: v is None)


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class ThinkingBlock(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(BaseModel):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


ContentBlock = Annotated[
    TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock, Field(discriminator="type")
]


def _absent(value: Any) -> bool:
    return value is None


class AppliedEdit(BaseModel):
    """One context-management edit the server applied (`clear_tool_uses_20250919`
    counts `cleared_tool_uses`, `clear_thinking_20251015` `cleared_thinking_turns`)."""

    type: str
    cleared_input_tokens: int
    cleared_tool_uses: int | None = Field(default=None, exclude_if=_absent)
    cleared_thinking_turns: int | None = Field(default=None, exclude_if=_absent)


class ContextManagementResponse(BaseModel):
    applied_edits: list[AppliedEdit]


class Message(BaseModel):
    # The order the API sends (api-spec §5.5); SDKs do not mind, people reading logs do.
    model: str
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    stop_details: dict[str, Any] | None = None
    usage: Usage
    # Only when the request asked for them (`context_management`, `diagnostics`).
    context_management: ContextManagementResponse | None = Field(default=None, exclude_if=_absent)
    diagnostics: dict[str, Any] | None = Field(default=None, exclude_if=_absent)


class TokenCount(BaseModel):
    input_tokens: int
    # Beta context management: `{"original_input_tokens": N}`, the count before edits.
    context_management: dict[str, int] | None = Field(default=None, exclude_if=_absent)
