"""What the upstream engines (OpenAI-compatible servers, Anthropic's API) share: the
HTTP client, naming and capabilities, and opening the upstream request only once
the request is admitted.

`prepare()` builds the upstream body and estimates the prompt's tokens; nothing
is sent. `open()` sends the request and waits up to `header_wait` for the
upstream's answer, so that an upstream refusal (429, 5xx, a refused connection)
reaches the client as an HTTP error with its retry headers, and the router can
try another backend (api-spec §6.4: once a stream has its 200, errors can only be
`error` events). The generation then claims the open response and reads it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from parley.config import AnthropicBackendConfig, OpenAIBackendConfig
from parley.core.generation import (
    CacheUsage,
    EngineCapabilities,
    EngineEvent,
    GenerationRequest,
)
from parley.engines.base import Engine, Generation, PreparedGeneration
from parley.engines.http_client import HTTPClient, Response
from parley.engines.token_estimates import estimate_input_tokens
from parley.engines.upstream_errors import transport_error
from parley.engines.upstream_http import (
    CLAIM_TIMEOUT,
    OpenStream,
    UpstreamCall,
    open_response,
    upstream_client,
)
from parley.errors import APIError


@dataclass(frozen=True)
class UpstreamRequest:
    """The body to send (None when there is nothing to generate: max_tokens 0), where
    to send it (None: the engine's `path`), and how to read the reply (`plan`, the
    engine's own)."""

    body: dict[str, Any] | None
    path: str | None = None
    plan: Any = None


class UpstreamEngine(Engine[UpstreamRequest]):
    path: str  # the generation endpoint, relative to the base URL

    def __init__(
        self,
        config: OpenAIBackendConfig | AnthropicBackendConfig,
        headers: dict[str, str],
        *,
        capabilities: EngineCapabilities,
        context_window: int,
        transport: httpx.AsyncBaseTransport | None = None,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        self.name = config.name or config.base_url
        self.capabilities = capabilities
        self._header_wait = config.header_wait
        self._context_window = context_window
        self._claim_timeout = claim_timeout
        self._client = upstream_client(
            config.base_url,
            headers,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            transport=transport,
        )
        # The generation request's client: no total deadline, a long generation is read
        # for as long as it streams.
        self._generations = HTTPClient(
            config.base_url,
            headers,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )

    @property
    def context_window(self) -> int:
        return self._context_window

    async def count_tokens(self, request: GenerationRequest) -> int:
        return estimate_input_tokens(request)

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[UpstreamRequest]:
        self.check(request)
        planned = self.plan(request) if request.max_tokens > 0 else UpstreamRequest(None)
        return PreparedGeneration(request, estimate_input_tokens(request), planned)

    async def open(self, prepared: PreparedGeneration[UpstreamRequest]) -> Generation:
        planned = await self.replan(prepared)
        body = planned.body
        if body is None:
            return Generation(await self.count_tokens(prepared.request), _nothing())
        path = planned.path or self.path
        call = UpstreamCall(
            self._generations,
            path,
            body,
            upstream=self.name,
            opened=self._opened,
            header_wait=self._header_wait,
            claim_timeout=self._claim_timeout,
        )
        opened = await call.start()
        input_tokens = self.opened_input_tokens(opened)
        return Generation(
            prepared.input_tokens if input_tokens is None else input_tokens,
            self._events(call, planned, prepared.request),
            call.discard,
            self.opened_cache(opened),
        )

    async def _opened(self, response: Response) -> OpenStream:
        stream = await open_response(response, upstream=self.name, error_from=self.error_from)
        try:
            await self.on_open(stream)
        except BaseException:
            stream.close()
            raise
        return stream

    async def _events(
        self, call: UpstreamCall, planned: UpstreamRequest, request: GenerationRequest
    ) -> AsyncGenerator[EngineEvent, None]:
        stream = await call.claim()
        try:
            async with aclosing(self.read(stream, planned, request)) as events:
                async for event in events:
                    yield event
        finally:
            stream.close()

    async def get(self, path: str, **params: Any) -> httpx.Response:
        try:
            return await self._client.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise transport_error(exc, upstream=self.name) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._generations.aclose()

    # -- what each upstream API does its own way --------------------------------------

    def check(self, request: GenerationRequest) -> None:
        """Refuse what this upstream cannot do, before anything is sent."""

    def plan(self, request: GenerationRequest) -> UpstreamRequest:
        """The upstream request for a generation (no IO)."""
        return UpstreamRequest(self.body(request))

    async def replan(self, prepared: PreparedGeneration[UpstreamRequest]) -> UpstreamRequest:
        """The request to send now: the prepared one, unless what the engine has learnt
        about its upstream since (by asking it) changes it."""
        return prepared.state

    @abstractmethod
    def body(self, request: GenerationRequest) -> dict[str, Any]: ...

    @abstractmethod
    def error_from(self, status: int, body: bytes, headers: Mapping[str, str]) -> APIError: ...

    async def on_open(self, stream: OpenStream) -> None:
        """Read what must be known before the client's response starts."""

    def opened_input_tokens(self, stream: OpenStream | None) -> int | None:
        """The prompt's size as the upstream reported it on opening, if it did."""
        return None

    def opened_cache(self, stream: OpenStream | None) -> CacheUsage | None:
        """The prompt's cached part as the upstream reported it on opening, if it did."""
        return None

    @abstractmethod
    def read(
        self, stream: OpenStream, planned: UpstreamRequest, request: GenerationRequest
    ) -> AsyncGenerator[EngineEvent, None]: ...


async def _nothing() -> AsyncGenerator[EngineEvent, None]:
    return
    yield  # an async generator that ends at once
