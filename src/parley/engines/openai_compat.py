"""An OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's llama-server,
Ollama, llama-cpp-python's server) as an engine.

The request is always streamed upstream, for plain replies too: Parley reads
the reply as it comes, stops it at a stop sequence, and renders it as the API's
events or one Message. The prompt's token count is estimated before the
request (the upstream reports its own count only at the end of the stream).

Which server it is (its flavor, engines/openai_flavors.py) is configured or asked
once at start, and decides every quirk: a request planned before the server
answered is planned again when it does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from parley.config import OpenAIBackendConfig
from parley.core.generation import (
    EngineCapabilities,
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ThinkingChunk,
)
from parley.engines.base import PreparedGeneration
from parley.engines.openai_flavors import (
    FLAVORS,
    Upstream,
    detect,
    llama_server_props,
    load_template,
    with_props,
)
from parley.engines.openai_raw import RAW_PATH, check_raw, raw_body, raw_template
from parley.engines.openai_tools import CALL_END, ReplyShape, reply_shape, shaped
from parley.engines.openai_wire import ChatStreamReader, as_chunk, chat_body, whole_reply
from parley.engines.token_estimates import estimate_tokens
from parley.engines.upstream import UpstreamEngine, UpstreamRequest
from parley.engines.upstream_errors import error_message, status_error
from parley.engines.upstream_http import CLAIM_TIMEOUT, OpenStream, SSEEvent
from parley.errors import APIError, InternalServerError, InvalidRequestError

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 8192


@dataclass(frozen=True)
class ReplyPlan:
    """How to read one reply: the upstream it was planned for, its tool shape, whether
    tool_choice forces a call, and the prefill the server repeats before continuing it
    (to be taken off again)."""

    upstream: Upstream
    shape: ReplyShape
    forced: bool
    echoed_prefill: str | None = None
    whole: bool = False  # asked for in one piece (openai_wire.whole_reply)


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
        self._template = None
        if config.chat_template is not None:
            try:
                self._template = load_template(config.chat_template)
            except (OSError, ValueError) as exc:
                name = config.name or config.base_url
                raise ValueError(f"backend {name}: chat_template: {exc}") from exc
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
        if config.flavor == "auto":
            self.upstream = Upstream(FLAVORS["generic"], self._template, detected=False)
        else:
            # llama-server's template and its tool support come from its /props.
            learnt = config.flavor != "llama-server"
            self.upstream = Upstream(FLAVORS[config.flavor], self._template, detected=learnt)
        self._learning = asyncio.Lock()

    # -- knowing the server ---------------------------------------------------------------

    async def start(self) -> None:
        await self.learn()

    async def learn(self) -> None:
        """Ask the server what it is, unless that is known already. A server that does
        not answer is asked again before the next request."""
        async with self._learning:
            if self.upstream.detected:
                return
            name = self.config.flavor
            if name == "auto":
                found = await detect(self._client)
                if found is None:
                    log.warning("backend %s did not answer; its flavor is unknown yet", self.name)
                    return
                name = found
            upstream = Upstream(FLAVORS[name], self._template)
            if name == "llama-server":
                props = await llama_server_props(self._client)
                upstream = with_props(upstream.flavor, props)
                if self._template is not None:  # a configured template wins
                    upstream = Upstream(upstream.flavor, self._template)
            self.upstream = upstream
            log.info("backend %s: %s (tools as %s)", self.name, name, upstream.flavor.tool_format)

    async def replan(self, prepared: PreparedGeneration[UpstreamRequest]) -> UpstreamRequest:
        if not self.upstream.detected:
            await self.learn()
        planned = prepared.state
        if planned.body is None or planned.plan.upstream is self.upstream:
            return planned
        self.check(prepared.request)
        return self.plan(prepared.request)

    # -- the request ----------------------------------------------------------------------

    def check(self, request: GenerationRequest) -> None:
        flavor = self.upstream.flavor
        if request.prefill:
            raw = flavor.prefill == "raw"
            if self.config.prefill == "refuse" or (raw and self.upstream.template is None):
                raise InvalidRequestError(
                    f"{request.model} does not support assistant message prefill. "
                    "The conversation must end with a user message."
                )
            if raw:
                check_raw(request)
        if request.sampling.top_k is not None and not flavor.top_k:
            raise InvalidRequestError(f"top_k: not supported by model {request.model}")

    def plan(self, request: GenerationRequest) -> UpstreamRequest:
        upstream = self.upstream
        flavor = upstream.flavor
        if request.prefill and flavor.prefill == "raw" and upstream.template is not None:
            # The prompt holds the tools as text, so calls come back as text.
            calls = bool(request.tools) and request.tool_choice.mode != "none"
            body = raw_body(request, self.config, flavor, raw_template(upstream.template))
            if calls:
                body["stop"] = [CALL_END]
            shape: ReplyShape = "text_calls" if calls else "plain"
            plan = ReplyPlan(upstream, shape, False, whole=whole_reply(request))
            return UpstreamRequest(body, RAW_PATH, plan)
        echoed = request.prefill if request.prefill and flavor.prefill_echo else None
        forced = bool(request.tools) and request.tool_choice.required
        return UpstreamRequest(
            chat_body(request, self.config, flavor, config_thinks=self.capabilities.thinking),
            None,
            ReplyPlan(upstream, reply_shape(request, flavor), forced, echoed, whole_reply(request)),
        )

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        body = self.plan(request).body
        assert body is not None
        return body

    def error_from(self, status: int, body: bytes, headers: Mapping[str, str]) -> APIError:
        message, _ = error_message(body)
        return status_error(status, message, headers, upstream=self.name, body=body)

    # -- the reply ------------------------------------------------------------------------

    def read(
        self, stream: OpenStream, planned: UpstreamRequest, request: GenerationRequest
    ) -> AsyncGenerator[EngineEvent, None]:
        # Layers, not a generator of its own: each closes the one it reads, and the
        # caller closes the outermost.
        plan: ReplyPlan = planned.plan
        reader = ChatStreamReader(
            self.name,
            plan.upstream.flavor.cached_tokens,
            thinking=request.thinking.mode != "off",
        )
        events = self._whole(stream, reader) if plan.whole else self._chunks(stream, reader)
        if plan.echoed_prefill:
            events = _without_echo(events, plan.echoed_prefill)
        return shaped(events, plan.shape, forced=plan.forced)

    async def _chunks(
        self, stream: OpenStream, reader: ChatStreamReader
    ) -> AsyncGenerator[EngineEvent, None]:
        """The reply's events as its chunks arrive. The text of chunks that arrived
        together (a backlog: the upstream ran ahead of Parley) goes on as one text
        event, so a backlog costs one pass through the layers above, not one a token;
        at a token's pace each chunk still goes on alone, and nothing is held back to
        wait for more."""
        done = False
        while not done and (event := await stream.next_event()) is not None:
            arrived: list[EngineEvent] = []
            try:
                done = _read_arrived(event, stream, reader, arrived)
            except APIError:
                # What arrived before a failure still goes out before it.
                for out in _text_joined(arrived):
                    yield out
                raise
            for out in _text_joined(arrived):
                yield out
        stream.ended = done
        yield reader.finished()

    async def _whole(
        self, stream: OpenStream, reader: ChatStreamReader
    ) -> AsyncGenerator[EngineEvent, None]:
        reply = await stream.json()
        if not isinstance(reply, Mapping):
            raise InternalServerError("Internal server error")
        events = reader.feed(as_chunk(reply))
        if reader.usage is None:
            # Without the server's count, the text's estimate (a stream counts its chunks).
            text = "".join(e.text for e in events if isinstance(e, TextChunk | ThinkingChunk))
            reader.output_tokens = max(reader.output_tokens, estimate_tokens(text))
        for out in events:
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
        if not self.upstream.detected:
            await self.learn()


def _read_arrived(
    event: SSEEvent | None, stream: OpenStream, reader: ChatStreamReader, into: list[EngineEvent]
) -> bool:
    """The events of `event` and of every one after it that has arrived whole already,
    into `into`; True at the stream's `[DONE]`."""
    while event is not None:
        data = event.data
        # Every chunk is a JSON object; only the end marker is not.
        if not data.startswith("{") and data.strip() == "[DONE]":
            return True
        try:
            chunk = event.json()
        except ValueError:
            raise InternalServerError("Internal server error") from None
        into += reader.feed(chunk)
        event = stream.buffered_event()
    return False


def _text_joined(events: list[EngineEvent]) -> list[EngineEvent]:
    """`events` with each run of text chunks as one chunk (the running token count is
    the run's last)."""
    out: list[EngineEvent] = []
    run: list[TextChunk] = []
    for event in events:
        if type(event) is TextChunk:
            run.append(event)
            continue
        if run:
            out.append(_joined(run))
            run = []
        out.append(event)
    if run:
        out.append(_joined(run))
    return out


def _joined(run: list[TextChunk]) -> TextChunk:
    if len(run) == 1:
        return run[0]
    return TextChunk("".join(chunk.text for chunk in run), run[-1].output_tokens)


async def _without_echo(
    events: AsyncGenerator[EngineEvent, None], prefill: str
) -> AsyncGenerator[EngineEvent, None]:
    """The reply without the prefill the server repeats at its start."""
    pending = ""
    done = False
    async with aclosing(events):
        async for event in events:
            if done:
                yield event
                continue
            if isinstance(event, TextChunk):
                pending += event.text
                if len(pending) < len(prefill) and prefill.startswith(pending):
                    continue
                done = True
                rest = pending.removeprefix(prefill)
                if rest:
                    yield TextChunk(rest, event.output_tokens)
                continue
            done = True
            if pending and not isinstance(event, Finished):
                yield TextChunk(pending, event.output_tokens)
            yield event
