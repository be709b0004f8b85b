"""Messages rules beyond the schema (api-spec §5.2, §5.3) and the neutral request."""

from __future__ import annotations

import json

from parley.core.generation import GenerationRequest, Role, Sampling, Turn
from parley.errors import InvalidRequestError
from parley.protocol.content import (
    DocumentBlockParam,
    ImageBlockParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from parley.protocol.requests import CountTokensParams, MessageCreateParams, MessageParam


def _system_text(system: str | list[TextBlockParam] | None) -> str | None:
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    text = "\n\n".join(block.text for block in system)
    return text or None


def _tool_result_text(block: ToolResultBlockParam) -> str:
    if block.content is None:
        body = ""
    elif isinstance(block.content, str):
        body = block.content
    else:
        body = "\n".join(b.text for b in block.content if isinstance(b, TextBlockParam))
    status = "error" if block.is_error else "result"
    return f"[tool {status} for {block.tool_use_id}]\n{body}"


def _content_text(message: MessageParam, index: int, model: str) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for j, block in enumerate(content):
        if isinstance(block, TextBlockParam):
            if not block.text:
                raise InvalidRequestError("messages: text content blocks must be non-empty")
            parts.append(block.text)
        elif isinstance(block, ThinkingBlockParam | RedactedThinkingBlockParam):
            continue  # earlier turns' thinking is not shown to the model (api-spec §8)
        elif isinstance(block, ToolUseBlockParam):
            parts.append(f"[tool call {block.id}: {block.name}({json.dumps(block.input)})]")
        elif isinstance(block, ToolResultBlockParam):
            parts.append(_tool_result_text(block))
        elif isinstance(block, ImageBlockParam):
            raise InvalidRequestError(
                f"messages.{index}.content.{j}: model {model} does not support image input."
            )
        elif isinstance(block, DocumentBlockParam):
            source = block.source
            if source.get("type") == "text" and isinstance(source.get("data"), str):
                parts.append(str(source["data"]))
            else:
                raise InvalidRequestError(
                    f"messages.{index}.content.{j}: model {model} only reads plain-text documents."
                )
    return "\n\n".join(parts)


def build_turns(messages: list[MessageParam], model: str) -> tuple[Turn, ...]:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    if messages[0].role != "user":
        raise InvalidRequestError('messages: first message must use the "user" role')
    turns: list[Turn] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        text = _content_text(message, i, model)
        is_prefill = i == last and message.role == "assistant"
        if not text and not is_prefill:
            raise InvalidRequestError(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        if is_prefill and text != text.rstrip():
            raise InvalidRequestError(
                "messages: final assistant content cannot end with trailing whitespace"
            )
        role: Role = message.role
        # Consecutive same-role turns are merged (the current contract, api-spec §5.2).
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, f"{turns[-1].text}\n\n{text}" if text else turns[-1].text)
        else:
            turns.append(Turn(role, text))
    return tuple(turns)


def generation_request(params: MessageCreateParams) -> GenerationRequest:
    return GenerationRequest(
        model=params.model,
        system=_system_text(params.system),
        turns=build_turns(params.messages, params.model),
        max_tokens=params.max_tokens,
        stop_sequences=tuple(s for s in params.stop_sequences or () if s),
        sampling=Sampling(
            temperature=1.0 if params.temperature is None else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
        ),
    )


def counting_request(params: CountTokensParams) -> GenerationRequest:
    return GenerationRequest(
        model=params.model,
        system=_system_text(params.system),
        turns=build_turns(params.messages, params.model),
        max_tokens=0,
    )
