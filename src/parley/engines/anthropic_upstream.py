"""Anthropic's API (or any server that speaks it, another Parley included) as an engine.

Parley's own keys, limits, usage and CORS apply on its side; the request goes
upstream with the server-held key, which never reaches a client or a log. The
upstream's events are relayed as they arrive: its `message_start` is read
before Parley's response starts, so the prompt's token count is exact and an
upstream refusal is an HTTP error (api-spec §6.4).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from parley.config import AnthropicBackendConfig
from parley.core.generation import (
    CacheUsage,
    CitationChunk,
    EngineCapabilities,
    EngineEvent,
    EngineStopReason,
    Finished,
    GenerationRequest,
    RedactedThinking,
    TextBlockStart,
    TextChunk,
    ThinkingChunk,
    ThinkingSignature,
    ToolCallStart,
    ToolInputChunk,
)
from parley.engines.anthropic_wire import anthropic_error, citation_from, messages_body
from parley.engines.token_estimates import estimate_input_tokens
from parley.engines.upstream import UpstreamEngine, UpstreamRequest
from parley.engines.upstream_errors import error_message, transport_error
from parley.engines.upstream_http import CLAIM_TIMEOUT, OpenStream, SSEEvent
from parley.errors import APIError, InternalServerError

DEFAULT_CONTEXT_WINDOW = 200_000

_STOP_REASONS: dict[str, EngineStopReason] = {
    reason: reason
    for reason in (
        "end_turn",
        "max_tokens",
        "tool_use",
        "refusal",
        "pause_turn",
        "model_context_window_exceeded",
    )
}


class AnthropicUpstreamEngine(UpstreamEngine):
    path = "v1/messages"

    def __init__(
        self,
        config: AnthropicBackendConfig,
        *,
        context_window: int | None = None,
        capabilities: EngineCapabilities | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        headers = {"anthropic-version": config.anthropic_version}
        key = config.secret()
        if key:
            headers["x-api-key"] = key
        super().__init__(
            config,
            headers,
            capabilities=capabilities
            or EngineCapabilities(
                images=True,
                tools=True,
                structured_outputs=True,
                thinking=True,
                thinking_budgets=True,
                upstream_signatures=True,
                citations=True,
            ),
            context_window=context_window or DEFAULT_CONTEXT_WINDOW,
            transport=transport,
            claim_timeout=claim_timeout,
        )
        self.config = config

    async def count_tokens(self, request: GenerationRequest) -> int:
        body = messages_body(request, self.config.model, stream=False)
        try:
            response = await self._client.post("v1/messages/count_tokens", json=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, upstream=self.name) from exc
        if response.status_code in (404, 405):
            return estimate_input_tokens(request)  # a compatible server without the endpoint
        if response.status_code != 200:
            raise self.error_from(response.status_code, response.content, response.headers)
        tokens = response.json().get("input_tokens")
        return tokens if isinstance(tokens, int) else estimate_input_tokens(request)

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        return messages_body(request, self.config.model, stream=True)

    async def on_open(self, stream: OpenStream) -> None:
        # The upstream's message_start carries the prompt's exact size; it is read
        # before Parley's own response starts.
        while (event := await stream.next_event()) is not None:
            kind, data = _parse(event)
            if kind == "message_start":
                stream.head = data.get("message") or {}
                return
            if kind == "error":
                raise self._event_error(data)
        raise InternalServerError("Internal server error", headers={"x-should-retry": "true"})

    def opened_input_tokens(self, stream: OpenStream | None) -> int | None:
        tokens = _head_usage(stream).get("input_tokens")
        return tokens if isinstance(tokens, int) else None

    def opened_cache(self, stream: OpenStream | None) -> CacheUsage | None:
        return cache_usage(_head_usage(stream))

    def error_from(self, status: int, body: bytes, headers: Mapping[str, str]) -> APIError:
        message, kind = error_message(body)
        return anthropic_error(kind, message, headers, status=status, upstream=self.name)

    def _event_error(self, data: Mapping[str, Any]) -> APIError:
        error = data.get("error") or {}
        return anthropic_error(
            error.get("type"), error.get("message"), {}, status=500, upstream=self.name
        )

    async def read(
        self, stream: OpenStream, planned: UpstreamRequest, request: GenerationRequest
    ) -> AsyncGenerator[EngineEvent, None]:
        output_tokens = 0
        input_tokens: int | None = None
        cache: CacheUsage | None = None
        stop_reason: str | None = None
        stop_sequence: str | None = None
        stop_details: dict[str, Any] | None = None
        while (event := await stream.next_event()) is not None:
            kind, data = _parse(event)
            if kind == "content_block_start":
                block = data.get("content_block") or {}
                if block.get("type") == "tool_use":
                    yield ToolCallStart(block.get("name", ""), output_tokens, block.get("id"))
                elif block.get("type") == "text":
                    # The upstream's block boundaries are kept: cited text is a block
                    # of its own.
                    yield TextBlockStart(output_tokens)
                elif block.get("type") == "thinking":
                    yield ThinkingChunk(block.get("thinking") or "", output_tokens)
                elif block.get("type") == "redacted_thinking":
                    yield RedactedThinking(block.get("data", ""), output_tokens)
            elif kind == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    output_tokens += 1  # the exact count comes with message_delta
                    yield TextChunk(delta["text"], output_tokens)
                elif delta.get("type") == "input_json_delta":
                    yield ToolInputChunk(delta.get("partial_json", ""), output_tokens)
                elif delta.get("type") == "citations_delta":
                    citation = citation_from(delta.get("citation") or {})
                    if citation is not None:
                        yield CitationChunk(citation, output_tokens)
                elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                    output_tokens += 1
                    yield ThinkingChunk(delta["thinking"], output_tokens)
                elif delta.get("type") == "signature_delta":
                    # Anthropic's own signature, passed on unchanged (never re-signed).
                    yield ThinkingSignature(delta.get("signature", ""), output_tokens)
            elif kind == "message_delta":
                delta = data.get("delta") or {}
                stop_reason = delta.get("stop_reason")
                stop_sequence = delta.get("stop_sequence")
                if isinstance(delta.get("stop_details"), dict):
                    stop_details = delta["stop_details"]
                usage = data.get("usage") or {}
                if isinstance(usage.get("output_tokens"), int):
                    output_tokens = usage["output_tokens"]
                # Cumulative totals (api-spec §6.3); newer servers send the input side too.
                if isinstance(usage.get("input_tokens"), int):
                    input_tokens = usage["input_tokens"]
                cache = cache_usage(usage) or cache
            elif kind == "message_stop":
                stream.ended = True
                break
            elif kind == "error":
                raise self._event_error(data)
        if stop_reason is None:  # the upstream went away mid-reply
            raise InternalServerError("Internal server error", headers={"x-should-retry": "true"})
        if stop_reason == "stop_sequence" and stop_sequence:
            # The upstream leaves the matched sequence out of the text. Fed back,
            # Parley's matcher (core/stops.py) reports it, and first lets out any
            # text it was holding back as a possible start of a sequence.
            yield TextChunk(stop_sequence, output_tokens)
        yield Finished(
            _STOP_REASONS.get(stop_reason, "end_turn"),
            output_tokens,
            input_tokens=input_tokens,
            stop_details=stop_details,
            cache=cache,
        )

    async def check_health(self) -> None:
        response = await self.get("v1/models", limit=1)
        if response.status_code != 200:
            raise self.error_from(response.status_code, response.content, response.headers)


def _parse(event: SSEEvent) -> tuple[str | None, dict[str, Any]]:
    try:
        data = event.json()
    except ValueError:
        raise InternalServerError("Internal server error") from None
    if not isinstance(data, dict):
        raise InternalServerError("Internal server error")
    # Clients dispatch on the `event:` line (api-spec §6.1); so does Parley.
    return event.event or data.get("type"), data


def _head_usage(stream: OpenStream | None) -> Mapping[str, Any]:
    head = stream.head if stream is not None else None
    usage = (head or {}).get("usage")
    return usage if isinstance(usage, Mapping) else {}


def cache_usage(usage: Mapping[str, Any] | None) -> CacheUsage | None:
    """The upstream's prompt-cache counts, unchanged (api-spec §16); None without any."""
    if not usage:
        return None
    by_ttl = usage.get("cache_creation")
    by_ttl = by_ttl if isinstance(by_ttl, Mapping) else {}
    counts = {
        "read_input_tokens": usage.get("cache_read_input_tokens"),
        "creation_input_tokens": usage.get("cache_creation_input_tokens"),
        "ephemeral_5m_input_tokens": by_ttl.get("ephemeral_5m_input_tokens"),
        "ephemeral_1h_input_tokens": by_ttl.get("ephemeral_1h_input_tokens"),
    }
    known = {k: v for k, v in counts.items() if isinstance(v, int)}
    return CacheUsage(**known) if known else None
