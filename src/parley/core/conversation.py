"""Messages rules beyond the schema (api-spec §5.2, §5.3) and the neutral request.

Content blocks become neutral parts: text, images (decoded, checked, fetched when
the server allows URLs), documents (read into text), the assistant's tool calls and
the user's tool results. Sources held elsewhere (a `file_id`, a URL) are read
through the protocols of `core.file_sources`, whose IO lives in the pipeline. What
the model cannot read is refused with a 400 that names it, never dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parley.core.cache_marks import check_cache_breakpoints
from parley.core.document_blocks import read_document
from parley.core.file_sources import (
    DocumentFetch,
    FileRead,
    file_sources_refused,
    wrong_file_type,
)
from parley.core.generation import (
    DocumentPart,
    EngineCapabilities,
    GenerationRequest,
    ImagePart,
    Part,
    Role,
    Sampling,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    Turn,
)
from parley.core.images import (
    MAX_BASE64_BYTES,
    ImageFetch,
    check_image_bytes,
    decode_base64_image,
    image_part,
    url_images_refused,
)
from parley.core.output_schemas import check_output_schema
from parley.core.request_fields import check_message_fields, check_prompt_fields
from parley.core.thinking import (
    ThinkingSigner,
    check_thinking_turns,
    invalid_signature,
    thinking_of,
)
from parley.core.tool_pairing import check_tool_pairing
from parley.core.tools import cache_mark, tool_choice, tool_specs
from parley.errors import InvalidRequestError
from parley.protocol.content import (
    Base64ImageSource,
    DocumentBlockParam,
    ImageBlockParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    URLImageSource,
)
from parley.protocol.requests import CountTokensParams, MessageCreateParams, MessageParam


@dataclass(frozen=True)
class Sources:
    """Where sources held outside the request are read from; None: not on this server
    (such a source is a 400 that says so)."""

    images: ImageFetch | None = None
    documents: DocumentFetch | None = None
    files: FileRead | None = None


def _system_text(system: str | list[TextBlockParam] | None) -> str | None:
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    text = "\n\n".join(block.text for block in system)
    return text or None


def _system_parts(system: str | list[TextBlockParam] | None) -> tuple[TextPart, ...]:
    if not isinstance(system, list):
        return ()
    return tuple(TextPart(b.text, cache_mark(b.cache_control)) for b in system if b.text)


class _Reader:
    """Reads one request's content blocks into parts."""

    def __init__(
        self,
        model: str,
        capabilities: EngineCapabilities,
        sources: Sources,
        names: dict[str, str],
        signer: ThinkingSigner | None,
    ) -> None:
        self._model = model
        self._capabilities = capabilities
        self._sources = sources
        self._names = names
        self._documents = 0  # documents read so far: the next one's document_index
        self._signer = signer

    async def parts(self, message: MessageParam, i: int) -> tuple[Part, ...]:
        if isinstance(message.content, str):
            return (TextPart(message.content),) if message.content else ()
        parts: list[Part] = []
        for j, block in enumerate(message.content):
            path = f"messages.{i}.content.{j}"
            if isinstance(block, TextBlockParam):
                parts.append(self._text(block))
            elif isinstance(block, ThinkingBlockParam):
                parts.append(self._thinking(block, path))
            elif isinstance(block, RedactedThinkingBlockParam):
                # Opaque: Parley's own are never produced unsigned, an upstream's go back.
                parts.append(ThinkingPart(data=block.data))
            elif isinstance(block, ToolUseBlockParam):
                parts.append(
                    ToolCall(block.id, block.name, block.input, cache_mark(block.cache_control))
                )
            elif isinstance(block, ToolResultBlockParam):
                parts.append(await self._tool_result(block, f"{path}.tool_result"))
            elif isinstance(block, ImageBlockParam):
                parts.append(await self._image(block, path))
            elif isinstance(block, DocumentBlockParam):
                parts.append(await self._document(block, path))
        return tuple(parts)

    def _thinking(self, block: ThinkingBlockParam, path: str) -> ThinkingPart:
        # Earlier turns' thinking is checked but not shown to a local model (api-spec
        # §8); an Anthropic upstream checks its own signatures.
        if not self._capabilities.upstream_signatures and (
            self._signer is None or not self._signer.verify(block.thinking, block.signature)
        ):
            raise invalid_signature(path)
        return ThinkingPart(block.thinking, block.signature)

    def _text(self, block: TextBlockParam) -> TextPart:
        if not block.text:
            raise InvalidRequestError("messages: text content blocks must be non-empty")
        return TextPart(block.text, cache_mark(block.cache_control))

    async def _tool_result(self, block: ToolResultBlockParam, path: str) -> ToolResult:
        content: list[TextPart | ImagePart | DocumentPart] = []
        if isinstance(block.content, str):
            content = [TextPart(block.content)] if block.content else []
        elif block.content is not None:
            for k, inner in enumerate(block.content):
                inner_path = f"{path}.content.{k}"
                if isinstance(inner, TextBlockParam):
                    content.append(self._text(inner))
                elif isinstance(inner, ImageBlockParam):
                    content.append(await self._image(inner, inner_path))
                else:
                    content.append(await self._document(inner, inner_path))
        name = self._names.get(block.tool_use_id, "")
        return ToolResult(
            block.tool_use_id,
            name,
            tuple(content),
            bool(block.is_error),
            cache_mark(block.cache_control),
        )

    async def _image(self, block: ImageBlockParam, path: str) -> ImagePart:
        if not self._capabilities.images:
            raise InvalidRequestError(f"{path}: model {self._model} does not support image input.")
        source = block.source
        if isinstance(source, Base64ImageSource):
            image = decode_base64_image(
                source.data, source.media_type, f"{path}.image.source.base64"
            )
        elif isinstance(source, URLImageSource):
            if self._sources.images is None:
                raise url_images_refused(f"{path}.image.source.url")
            image = await self._sources.images.fetch(source.url, f"{path}.image.source.url")
        else:
            image = await self._file_image(source.file_id, f"{path}.image.source.file")
        mark = cache_mark(block.cache_control)
        return dataclasses.replace(image, cache=mark) if mark else image

    async def _file_image(self, file_id: str, file_path: str) -> ImagePart:
        if self._sources.files is None:
            raise file_sources_refused(file_path)
        file = await self._sources.files.read(file_id, file_path)
        if not file.mime_type.startswith("image/"):
            raise wrong_file_type(file_path, file, "image")
        # The inline limit, held to the file's bytes (api-spec §5.3).
        if len(file.data) > MAX_BASE64_BYTES:
            raise InvalidRequestError(
                f"{file_path}: image exceeds 5 MB maximum: {len(file.data)} bytes > "
                f"{MAX_BASE64_BYTES} bytes"
            )
        return image_part(file.data, check_image_bytes(file.data, file.mime_type, file_path))

    async def _document(self, block: DocumentBlockParam, path: str) -> DocumentPart:
        index = self._documents
        self._documents += 1
        document = await read_document(
            block,
            path,
            index,
            model=self._model,
            capabilities=self._capabilities,
            urls=self._sources.documents,
            files=self._sources.files,
        )
        mark = cache_mark(block.cache_control)
        return dataclasses.replace(document, cache=mark) if mark else document


async def build_turns(
    messages: list[MessageParam],
    model: str,
    capabilities: EngineCapabilities,
    sources: Sources | None = None,
    signer: ThinkingSigner | None = None,
) -> tuple[Turn, ...]:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    if messages[0].role != "user":
        raise InvalidRequestError('messages: first message must use the "user" role')
    pairing = check_tool_pairing(messages)
    reader = _Reader(model, capabilities, sources or Sources(), pairing, signer)
    turns: list[Turn] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        parts = await reader.parts(message, i)
        is_prefill = i == last and message.role == "assistant"
        if not parts and not is_prefill:
            raise InvalidRequestError(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        text = Turn(message.role, parts).text
        if is_prefill and text != text.rstrip():
            raise InvalidRequestError(
                "messages: final assistant content cannot end with trailing whitespace"
            )
        role: Role = message.role
        # Consecutive same-role turns are merged (the current contract, api-spec §5.2).
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, turns[-1].parts + parts)
        else:
            turns.append(Turn(role, parts))
    return tuple(turns)


def output_schema(
    params: MessageCreateParams | CountTokensParams, capabilities: EngineCapabilities
) -> Mapping[str, Any] | None:
    """`output_config.format` (or the beta's deprecated `output_format`), checked."""
    config = params.output_config
    fmt, path = (config.format, "output_config.format") if config else (None, "")
    legacy = params.output_format if isinstance(params, MessageCreateParams) else None
    if legacy is not None:
        if fmt is not None:
            raise InvalidRequestError(
                "output_format: Both output_format and output_config.format were provided. "
                "Please use only output_config.format (output_format is deprecated)."
            )
        fmt, path = legacy, "output_format"
    if fmt is None:
        return None
    if not capabilities.structured_outputs:
        raise InvalidRequestError(
            f"{path}: model {params.model} does not support structured outputs."
        )
    check_output_schema(fmt.json_schema, f"{path}.schema")
    return fmt.json_schema


async def generation_request(
    params: MessageCreateParams,
    capabilities: EngineCapabilities,
    sources: Sources | None = None,
    signer: ThinkingSigner | None = None,
    *,
    cache_scope: str | None = None,
) -> GenerationRequest:
    """The engine's request for a message; `cache_scope` keeps its prompt cache
    entries apart from other scopes'."""
    check_message_fields(params, capabilities)
    tools = tool_specs(params.tools, capabilities, params.model)
    thinking = thinking_of(params, capabilities, params.max_tokens)
    check_thinking_turns(params.messages, thinking)
    request = GenerationRequest(
        model=params.model,
        system=_system_text(params.system),
        turns=await build_turns(params.messages, params.model, capabilities, sources, signer),
        max_tokens=params.max_tokens,
        stop_sequences=tuple(s for s in params.stop_sequences or () if s),
        sampling=Sampling(
            temperature=1.0 if params.temperature is None else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
        ),
        tools=tools,
        tool_choice=tool_choice(params.tool_choice, tools),
        system_parts=_system_parts(params.system),
        cache=cache_mark(params.cache_control),
        output_schema=output_schema(params, capabilities),
        thinking=thinking,
        cache_scope=cache_scope,
        streamed=bool(params.stream),
    )
    check_cache_breakpoints(request)
    return request


async def counting_request(
    params: CountTokensParams,
    capabilities: EngineCapabilities,
    sources: Sources | None = None,
    signer: ThinkingSigner | None = None,
) -> GenerationRequest:
    # `compaction` is accepted and ignored here, as the API documents for count_tokens.
    check_prompt_fields(params, capabilities)
    tools = tool_specs(params.tools, capabilities, params.model)
    request = GenerationRequest(
        model=params.model,
        system=_system_text(params.system),
        turns=await build_turns(params.messages, params.model, capabilities, sources, signer),
        max_tokens=0,
        tools=tools,
        tool_choice=tool_choice(params.tool_choice, tools),
        system_parts=_system_parts(params.system),
        cache=cache_mark(params.cache_control),
        output_schema=output_schema(params, capabilities),
        thinking=thinking_of(params, capabilities, None),
    )
    check_cache_breakpoints(request)
    return request
