"""Model objects and list pages (api-spec §9, §10; api-version §19.14)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel


class Supported(BaseModel):
    supported: bool


class ThinkingTypes(BaseModel):
    adaptive: Supported
    enabled: Supported


class ThinkingCapability(BaseModel):
    supported: bool
    types: ThinkingTypes


class ModelCapabilities(BaseModel):
    batch: Supported
    citations: Supported
    code_execution: Supported
    image_input: Supported
    pdf_input: Supported
    structured_outputs: Supported
    thinking: ThinkingCapability


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
