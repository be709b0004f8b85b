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
from typing import Any

import httpx

from parley.config import OpenAIBackendConfig
from parley.core.generation import EngineCapabilities, EngineEvent, GenerationRequest
from parley.engines.openai_wire import ChatStreamReader, chat_body
from parley.engines.upstream import UpstreamEngine
from parley.engines.upstream_errors import error_message, status_error
from parley.engines.upstream_http import CLAIM_TIMEOUT, OpenStream
from parley.errors import APIError, InternalServerError, InvalidRequestError

DEFAULT_CONTEXT_WINDOW = 8192


class OpenAICompatEngine(UpstreamEngine):
    path = "chat/completions"

    def __init__(
        self,
        config: OpenAIBackendConfig,
        *,
        context_window: int | None = None,
        capabilities: EngineCapabilities | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        key = config.secret()
        super().__init__(
            config,
            {"authorization": f"Bearer {key}"} if key else {},
            capabilities=capabilities
            or EngineCapabilities(images=False, tools=True, structured_outputs=True),
            context_window=context_window or DEFAULT_CONTEXT_WINDOW,
            transport=transport,
            claim_timeout=claim_timeout,
        )
        self.config = config

    def check(self, request: GenerationRequest) -> None:
        if request.prefill and self.config.prefill == "refuse":
            raise InvalidRequestError(
                f"{request.model} does not support assistant message prefill. "
                "The conversation must end with a user message."
            )

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        return chat_body(request, self.config, config_thinks=self.capabilities.thinking)

    def error_from(self, status: int, body: bytes, headers: httpx.Headers) -> APIError:
        message, _ = error_message(body)
        return status_error(status, message, headers, upstream=self.name)

    async def read(
        self, stream: OpenStream, request: GenerationRequest
    ) -> AsyncGenerator[EngineEvent, None]:
        reader = ChatStreamReader(self.name, thinking=request.thinking.mode != "off")
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

    async def check_health(self) -> None:
        response = await self.get("models")
        if response.status_code != 200:
            message, _ = error_message(response.content)
            raise status_error(response.status_code, message, response.headers, upstream=self.name)
        try:
            json.loads(response.content)  # a server that answers JSON, not a login page
        except ValueError:
            raise InternalServerError(f"{self.name}/models did not answer JSON") from None
