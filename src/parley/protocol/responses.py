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


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


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
