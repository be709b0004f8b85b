"""Messages rules beyond the schema (api-spec §5.2, §5.3) and the neutral request.

Content blocks become neutral parts: text, images (decoded, checked, fetched when
the server allows URLs), the assistant's tool calls and the user's tool results.
What the model cannot read is refused with a 400 that names it, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parley.core.generation import (
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
from parley.core.images import ImageFetch, decode_base64_image, url_images_refused
from parley.core.output_schemas import check_output_schema
from parley.core.request_fields import check_message_fields, check_prompt_fields
from parley.core.thinking import (
    ThinkingSigner,
    check_thinking_turns,
    invalid_signature,
    thinking_of,
)
from parley.core.tool_pairing import check_tool_pairing
from parley.core.tools import tool_choice, tool_specs
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


def _system_text(system: str | list[TextBlockParam] | None) -> str | None:
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    text = "\n\n".join(block.text for block in system)
    return text or None


class _Reader:
    """Reads one request's content blocks into parts."""

    def __init__(
        self,
        model: str,
        capabilities: EngineCapabilities,
        images: ImageFetch | None,
        names: dict[str, str],
        signer: ThinkingSigner | None,
    ) -> None:
        self._model = model
        self._capabilities = capabilities
        self._images = images
        self._names = names
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
                parts.append(ToolCall(block.id, block.name, block.input))
            elif isinstance(block, ToolResultBlockParam):
                parts.append(await self._tool_result(block, f"{path}.tool_result"))
            elif isinstance(block, ImageBlockParam):
                parts.append(await self._image(block, path))
            elif isinstance(block, DocumentBlockParam):
                parts.append(self._document(block, path))
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
        return TextPart(block.text)

    async def _tool_result(self, block: ToolResultBlockParam, path: str) -> ToolResult:
        content: list[TextPart | ImagePart] = []
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
                    content.append(self._document(inner, inner_path))
        name = self._names.get(block.tool_use_id, "")
        return ToolResult(block.tool_use_id, name, tuple(content), bool(block.is_error))

    async def _image(self, block: ImageBlockParam, path: str) -> ImagePart:
        if not self._capabilities.images:
            raise InvalidRequestError(f"{path}: model {self._model} does not support image input.")
        source = block.source
        if isinstance(source, Base64ImageSource):
            return decode_base64_image(
                source.data, source.media_type, f"{path}.image.source.base64"
            )
        if isinstance(source, URLImageSource):
            if self._images is None:
                raise url_images_refused(f"{path}.image.source.url")
            return await self._images.fetch(source.url, f"{path}.image.source.url")
        raise InvalidRequestError(
            f"{path}.image.source.file: file sources need the Files API, which this "
            "server does not provide"
        )

    def _document(self, block: DocumentBlockParam, path: str) -> TextPart:
        source = block.source
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return TextPart(str(source["data"]))
        raise InvalidRequestError(f"{path}: model {self._model} only reads plain-text documents.")


async def build_turns(
    messages: list[MessageParam],
    model: str,
    capabilities: EngineCapabilities,
    images: ImageFetch | None = None,
    signer: ThinkingSigner | None = None,
) -> tuple[Turn, ...]:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    if messages[0].role != "user":
        raise InvalidRequestError('messages: first message must use the "user" role')
    reader = _Reader(model, capabilities, images, check_tool_pairing(messages), signer)
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
    images: ImageFetch | None = None,
    signer: ThinkingSigner | None = None,
) -> GenerationRequest:
    check_message_fields(params, capabilities)
    tools = tool_specs(params.tools, capabilities, params.model)
    thinking = thinking_of(params, capabilities, params.max_tokens)
    check_thinking_turns(params.messages, thinking)
    return GenerationRequest(
        model=params.model,
        system=_system_text(params.system),
        turns=await build_turns(params.messages, params.model, capabilities, images, signer),
        max_tokens=params.max_tokens,
        stop_sequences=tuple(s for s in params.stop_sequences or () if s),
        sampling=Sampling(
            temperature=1.0 if params.temperature is None else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
        ),
        tools=tools,
        tool_choice=tool_choice(params.tool_choice, tools),
        output_schema=output_schema(params, capabilities),
        thinking=thinking,
    )


async def counting_request(
    params: CountTokensParams,
    capabilities: EngineCapabilities,
    images: ImageFetch | None = None,
    signer: ThinkingSigner | None = None,
) -> GenerationRequest:
    # `compaction` is accepted and ignored here, as the API documents for count_tokens.
    check_prompt_fields(params, capabilities)
    tools = tool_specs(params.tools, capabilities, params.model)
    return GenerationRequest(
        model=params.model,
        system=_system_text(params.system),
        turns=await build_turns(params.messages, params.model, capabilities, images, signer),
        max_tokens=0,
        tools=tools,
        tool_choice=tool_choice(params.tool_choice, tools),
        output_schema=output_schema(params, capabilities),
        thinking=thinking_of(params, capabilities, None),
    )
