"""The Messages API as an upstream: a neutral request as a Messages body, and the
upstream's errors as the errors Parley's client should see (api-spec §5, §12)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from parley.core.generation import (
    CacheMark,
    Citation,
    DocumentPart,
    GenerationRequest,
    ImagePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Turn,
)
from parley.engines.upstream_errors import status_error
from parley.errors import (
    TOO_LARGE,
    APIError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    RequestTooLargeError,
)


def image_block(image: ImagePart) -> dict[str, Any]:
    data = base64.b64encode(image.data).decode("ascii")
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.media_type, "data": data},
    }


def document_block(doc: DocumentPart) -> dict[str, Any]:
    """A document as the upstream reads it. A `file_id` names a file in Parley's store,
    which the upstream does not know: the file goes inline, as the source its kind
    would have had in the request (the upstream then cites it as Parley would number
    it, since documents keep their order)."""
    source: dict[str, Any]
    if doc.kind == "pdf" and doc.pdf is not None:
        data = base64.b64encode(doc.pdf).decode("ascii")
        source = {"type": "base64", "media_type": "application/pdf", "data": data}
    elif doc.kind == "content":
        source = {"type": "content", "content": [{"type": "text", "text": c} for c in doc.chunks]}
    else:
        source = {"type": "text", "media_type": "text/plain", "data": doc.content}
    block: dict[str, Any] = {"type": "document", "source": source}
    if doc.title is not None:
        block["title"] = doc.title
    if doc.context is not None:
        block["context"] = doc.context
    if doc.citations:
        block["citations"] = {"enabled": True}
    return block


def cache_control(mark: CacheMark | None) -> dict[str, Any]:
    """The caller's `cache_control`, as it came (api-spec §16), to merge into a block."""
    if mark is None:
        return {}
    control = {"type": "ephemeral"} | ({"ttl": mark.ttl} if mark.ttl else {})
    return {"cache_control": control}


def _block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        # Empty text blocks are refused (api-spec §5.2); merged turns can hold them.
        if not part.text:
            return None
        return {"type": "text", "text": part.text} | cache_control(part.cache)
    if isinstance(part, ImagePart):
        return image_block(part) | cache_control(part.cache)
    if isinstance(part, DocumentPart):
        return document_block(part) | cache_control(part.cache)
    if isinstance(part, ToolCall):
        call = {"type": "tool_use", "id": part.id, "name": part.name, "input": dict(part.input)}
        return call | cache_control(part.cache)
    if isinstance(part, ThinkingPart):
        # Anthropic's own blocks, back unchanged for it to check their signatures.
        if part.data is not None:
            return {"type": "redacted_thinking", "data": part.data}
        return {"type": "thinking", "thinking": part.thinking, "signature": part.signature}
    result: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": part.tool_use_id,
        "content": [b for b in map(_block, part.content) if b is not None],
    }
    if part.is_error:
        result["is_error"] = True
    return result | cache_control(part.cache)


def _message(turn: Turn) -> dict[str, Any]:
    if all(isinstance(p, TextPart) and p.cache is None for p in turn.parts):
        return {"role": turn.role, "content": turn.text}
    return {"role": turn.role, "content": [b for b in map(_block, turn.parts) if b is not None]}


def _system(request: GenerationRequest) -> str | list[dict[str, Any]] | None:
    if request.system_parts:
        return [b for b in map(_block, request.system_parts) if b is not None]
    return request.system


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    body: dict[str, Any] = {"type": choice.mode}
    if choice.mode == "tool":
        body["name"] = choice.name
    if not choice.parallel and choice.mode != "none":
        body["disable_parallel_tool_use"] = True
    return body


_CITATION_SPANS = {
    "char_location": ("start_char_index", "end_char_index"),
    "page_location": ("start_page_number", "end_page_number"),
    "content_block_location": ("start_block_index", "end_block_index"),
}


def citation_from(data: Mapping[str, Any]) -> Citation | None:
    """An upstream's `citations_delta` citation; None for kinds that cite no document
    of the request (web search results), which Parley's requests never enable."""
    kind = data.get("type")
    spans = _CITATION_SPANS.get(kind) if isinstance(kind, str) else None
    if spans is None:
        return None
    start, end = data.get(spans[0]), data.get(spans[1])
    index = data.get("document_index")
    if not (isinstance(start, int) and isinstance(end, int) and isinstance(index, int)):
        return None
    title = data.get("document_title")
    return Citation(
        kind=kind,  # type: ignore[arg-type]  # one of _CITATION_SPANS' keys
        cited_text=str(data.get("cited_text") or ""),
        document_index=index,
        document_title=title if isinstance(title, str) else None,
        start=start,
        end=end,
    )


def _tool(tool: ToolSpec) -> dict[str, Any]:
    body: dict[str, Any] = {"name": tool.name, "input_schema": dict(tool.input_schema)}
    if tool.description:
        body["description"] = tool.description
    if tool.strict:
        body["strict"] = True
    return body


def messages_body(request: GenerationRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """A Messages body; without `stream`, a count_tokens body (no generation fields)."""
    body: dict[str, Any] = {"model": model, "messages": [_message(t) for t in request.turns]}
    system = _system(request)
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [_tool(t) | cache_control(t.cache) for t in request.tools]
        body["tool_choice"] = _tool_choice(request.tool_choice)
    body |= cache_control(request.cache)
    thinking = request.thinking
    if thinking.mode == "enabled":
        body["thinking"] = {"type": "enabled", "budget_tokens": thinking.budget_tokens}
    elif thinking.mode == "adaptive":
        body["thinking"] = {"type": "adaptive"}
    if thinking.mode != "off" and thinking.omitted:
        body["thinking"]["display"] = "omitted"
    output: dict[str, Any] = {}
    if thinking.effort is not None:
        output["effort"] = thinking.effort
    if request.output_schema is not None:
        output["format"] = {"type": "json_schema", "schema": dict(request.output_schema)}
    if output:
        body["output_config"] = output
    if not stream:
        return body
    body["max_tokens"] = request.max_tokens
    body["stream"] = True
    if request.stop_sequences:
        body["stop_sequences"] = list(request.stop_sequences)
    sampling = request.sampling
    # Only what the client changed: the newest models refuse some combinations
    # (temperature with top_p, api-spec §5.1), and 1.0 is the API's default.
    if sampling.temperature != 1.0:
        body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    if sampling.top_k is not None:
        body["top_k"] = sampling.top_k
    return body


def anthropic_error(
    kind: str | None, message: str | None, headers: Mapping[str, str], *, status: int, upstream: str
) -> APIError:
    """An upstream error, by its Anthropic type when it has one."""
    retry = {name: headers[name] for name in ("retry-after", "retry-after-ms") if name in headers}
    if kind == "rate_limit_error":
        # The upstream's message names its organization; the client only needs to wait.
        retry["x-should-retry"] = headers.get("x-should-retry", "true")
        return RateLimitError("Rate limited upstream; try again later.", headers=retry)
    if kind == "overloaded_error":
        return OverloadedError("Overloaded", headers={"x-should-retry": "true", **retry})
    if kind == "api_error":
        return InternalServerError("Internal server error", headers={"x-should-retry": "true"})
    if kind == "timeout_error":
        return GatewayTimeoutError("Request timed out", headers={"x-should-retry": "true"})
    if kind == "invalid_request_error":
        return InvalidRequestError(message or "Invalid request")
    if kind == "request_too_large":
        return RequestTooLargeError(message or TOO_LARGE)
    if kind in ("authentication_error", "permission_error", "not_found_error", "billing_error"):
        # About the server-held key or the configured upstream model: status_error logs
        # it and answers 500 without a word about the upstream.
        status = {"authentication_error": 401, "not_found_error": 404}.get(kind, 403)
    return status_error(status, message, headers, upstream=upstream)
