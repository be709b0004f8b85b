"""Model objects and list pages (api-spec §9, §10; api-version §19.14)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel


class Supported(BaseModel):
    supported: bool


class ThinkingTypes(BaseModel):
    adaptive: Supported
    enabled: Supported
    between_tools: Supported
    disabled: Supported


class ThinkingCapability(BaseModel):
    supported: bool
    types: ThinkingTypes


class EffortCapability(BaseModel):
    supported: bool
    low: Supported
    medium: Supported
    high: Supported
    max: Supported
    xhigh: Supported


class ContextManagementCapability(BaseModel):
    supported: bool
    clear_tool_uses_20250919: Supported
    clear_thinking_20251015: Supported
    compact_20260112: Supported


class ServerToolsCapability(BaseModel):
    supported: bool
    code_execution: Supported
    web_search: Supported


class ModelCapabilities(BaseModel):
    batch: Supported
    citations: Supported
    code_execution: Supported
    context_management: ContextManagementCapability
    effort: EffortCapability
    image_input: Supported
    pdf_input: Supported
    server_tools: ServerToolsCapability
    structured_outputs: Supported
    thinking: ThinkingCapability
    # Not in the API's object (every Claude model calls tools): Parley's engines differ,
    # so this says whether the model takes `tools`. The SDKs keep unknown keys.
    tool_use: Supported


class ModelInfo(BaseModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int | None
    max_tokens: int | None
    capabilities: ModelCapabilities
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    deprecated_at: str | None = None
    retires_at: str | None = None
    line: str | None = None


T = TypeVar("T", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    """A list page. `has_more`, `first_id` and `last_id` are always sent (api-spec §10)."""

    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None
