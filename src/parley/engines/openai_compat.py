"""An OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's llama-server,
Ollama, llama-cpp-python's server) as an engine.

The request is always streamed upstream, for plain replies too: Parley reads
the reply as it comes, stops it at a stop sequence, and renders it as the API's
events or one Message. The prompt's token count is estimated before the
request (the upstream reports its own count only at the end of the stream).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import httpx

from parley.config import OpenAIBackendConfig
from parley.core.generation import EngineEvent, GenerationRequest
from parley.core.messages import check_context
from parley.engines.base import Engine, EngineCapabilities, PreparedGeneration
from parley.engines.openai_wire import ChatStreamReader, chat_body
from parley.engines.token_estimates import estimate_input_tokens
from parley.engines.upstream_errors import error_message, status_error, transport_error
from parley.engines.upstream_http import (
    CLAIM_TIMEOUT,
    OpenStream,
    UpstreamCall,
    open_stream,
    upstream_client,
)
from parley.errors import APIError, InternalServerError, InvalidRequestError

DEFAULT_CONTEXT_WINDOW = 8192


class OpenAICompatEngine(Engine):
    def __init__(
        self,
        config: OpenAIBackendConfig,
        *,
        context_window: int | None = None,
        capabilities: EngineCapabilities | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        self.config = config
        self.name = config.name or config.base_url
        self.capabilities = capabilities or EngineCapabilities(images=False, tools=True)
        self._context_window = context_window or DEFAULT_CONTEXT_WINDOW
        self._claim_timeout = claim_timeout
        key = config.secret()
        self._client = upstream_client(
            config.base_url,
            {"authorization": f"Bearer {key}"} if key else {},
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            transport=transport,
        )

    @property
    def context_window(self) -> int:
        return self._context_window

    async def count_tokens(self, request: GenerationRequest) -> int:
        return estimate_input_tokens(request)

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        if request.prefill and self.config.prefill == "refuse":
            raise InvalidRequestError(
                f"{request.model} does not support assistant message prefill. "
                "The conversation must end with a user message."
            )
        input_tokens = estimate_input_tokens(request)
        # Checked here too, before anything is sent upstream.
        check_context(input_tokens, request.max_tokens, self.context_window)
        if request.max_tokens == 0:
            return PreparedGeneration(request, input_tokens, None)
        body = chat_body(request, self.config)
        call = UpstreamCall(
            lambda: self._open(body),
            header_wait=self.config.header_wait,
            claim_timeout=self._claim_timeout,
        )
        await call.start()
        return PreparedGeneration(request, input_tokens, call)

    async def _open(self, body: dict[str, object]) -> OpenStream:
        return await open_stream(
            self._client,
            "chat/completions",
            body,
            upstream=self.name,
            error_from=self._error_from,
        )

    def _error_from(self, status: int, body: bytes, headers: httpx.Headers) -> APIError:
        message, _ = error_message(body)
        return status_error(status, message, headers, upstream=self.name)

    async def generate(self, prepared: PreparedGeneration) -> AsyncGenerator[EngineEvent, None]:
        call = prepared.prompt
        assert isinstance(call, UpstreamCall)
        stream = await call.claim()
        reader = ChatStreamReader(self.name)
        try:
            while (event := await stream.next_event()) is not None:
                if event.data.strip() == "[DONE]":
                    break
                try:
                    chunk = event.json()
                except ValueError:
                    raise InternalServerError("Internal server error") from None
                for out in reader.feed(chunk):
                    yield out
            yield reader.finished()
        finally:
            await stream.aclose()

    async def check_health(self) -> None:
        try:
            response = await self._client.get("models")
        except httpx.HTTPError as exc:
            raise transport_error(exc, upstream=self.name) from exc
        if response.status_code != 200:
            message, _ = error_message(response.content)
            raise status_error(response.status_code, message, response.headers, upstream=self.name)
        try:
            json.loads(response.content)  # a server that answers JSON, not a login page
        except ValueError:
            raise InternalServerError(f"{self.name}/models did not answer JSON") from None

    async def aclose(self) -> None:
        await self._client.aclose()
