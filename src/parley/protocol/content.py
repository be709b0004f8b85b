"""Input content blocks (api-spec §5.3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheControl(Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlockParam(Strict):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64ImageSource(Strict):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLImageSource(Strict):
    type: Literal["url"]
    url: str


class FileImageSource(Strict):
    type: Literal["file"]
    file_id: str


ImageSource = Annotated[
    Base64ImageSource | URLImageSource | FileImageSource, Field(discriminator="type")
]


class ImageBlockParam(Strict):
    type: Literal["image"]
    source: ImageSource
    cache_control: CacheControl | None = None


class Base64PDFSource(Strict):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(Strict):
    type: Literal["text"]
    # Any other media type is the schema's own 400 (`...source.text.media_type: Input
    # should be 'text/plain'`), as for every literal the API checks.
    media_type: Literal["text/plain"]
    data: str


# A content source holds text and image blocks (api-spec §5.3); each block is the
# unit a `content_block_location` citation points at.
ContentSourceBlock = Annotated[TextBlockParam | ImageBlockParam, Field(discriminator="type")]


class ContentBlockSource(Strict):
    type: Literal["content"]
    content: str | list[ContentSourceBlock]


class URLPDFSource(Strict):
    type: Literal["url"]
    url: str


class FileDocumentSource(Strict):
    type: Literal["file"]
    file_id: str


DocumentSource = Annotated[
    Base64PDFSource | PlainTextSource | ContentBlockSource | URLPDFSource | FileDocumentSource,
    Field(discriminator="type"),
]


class CitationsConfig(Strict):
    enabled: bool | None = None


class DocumentBlockParam(Strict):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: CitationsConfig | None = None
    cache_control: CacheControl | None = None

    @property
    def cites(self) -> bool:
        return bool(self.citations and self.citations.enabled)


# Observed: `messages.1.content.1.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'`.
ToolUseId = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]+$")]


class ToolUseBlockParam(Strict):
    type: Literal["tool_use"]
    id: ToolUseId
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    caller: dict[str, Any] | None = None
    toolset_name: str | None = None


ToolResultContentBlock = Annotated[
    TextBlockParam | ImageBlockParam | DocumentBlockParam, Field(discriminator="type")
]


class ToolResultBlockParam(Strict):
    type: Literal["tool_result"]
    tool_use_id: ToolUseId
    content: str | list[ToolResultContentBlock] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None
    toolset_name: str | None = None


class ThinkingBlockParam(Strict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlockParam(Strict):
    type: Literal["redacted_thinking"]
    data: str


ContentBlockParam = Annotated[
    TextBlockParam
    | ImageBlockParam
    | DocumentBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam,
    Field(discriminator="type"),
]
