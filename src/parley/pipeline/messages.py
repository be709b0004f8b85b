"""The one path of a message, for `POST /v1/messages` and the batch worker alike.

resolve the model -> monthly budget -> prepare (render, tokenize, check the
context once; nothing opened) -> admit (rate limits) -> open the engine's
generation (a place in its queue, or the upstream request) -> events -> settle
(the unused output reservation back, usage recorded), however the events end.

A prepared request that is refused before it is opened is discarded at once, and
an admitted one that its engine refuses is refunded: neither costs the client
anything, and nothing upstream was started for either. Batch requests differ in
two named ways (`Priority`): they skip the per-minute limits (the API counts batch
work apart), and they wait behind interactive requests for an engine.

Telemetry: an HTTP request's model, time to first token, tokens and any failure
after the start go to `Metrics`; its steps are spans when tracing is on. Batch work
reports its tokens and failures only.

A request with a `thread` is checked and, for a `continue`, claimed and made into the
full conversation first (pipeline/threads.py); its turn is kept just before
`message_stop` goes out, so a client that reads it can continue at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from parley.core.context_edits import Measure, apply_context_edits, check_context_management
from parley.core.conversation import Sources, counting_request, generation_request
from parley.core.file_sources import DocumentFetch
from parley.core.generation import GenerationRequest, Turn
from parley.core.images import ImageFetch
from parley.core.messages import MessageStream, check_context, check_max_tokens
from parley.core.records import ApiKey, UsageRecord
from parley.core.slots import background
from parley.core.thinking import ThinkingSigner
from parley.engines.base import Engine, Generation
from parley.engines.registry import ModelEntry, ModelRegistry
from parley.errors import APIError
from parley.pipeline.files import FileService
from parley.pipeline.threads import Threads, ThreadTurn
from parley.protocol.requests import CountTokensParams, MessageCreateParams
from parley.protocol.responses import ContextManagementResponse, Message
from parley.protocol.stream import MessageStopEvent, StreamEvent
from parley.ratelimit.limiter import Admission, Clock, RateLimiter
from parley.store.usage_recorder import UsageRecorder
from parley.telemetry.context import RequestContext, current_request
from parley.telemetry.metrics import Metrics
from parley.telemetry.tracing import Tracing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenCount:
    input_tokens: int
    headers: dict[str, str]
    # With `context_management`: the count before the edits (the beta response's
    # `context_management.original_input_tokens`).
    original_input_tokens: int | None = None


Priority = Literal["interactive", "batch"]
Spawn = Callable[[Coroutine[Any, Any, None]], None]

_NOT_TRACED = Tracing()


class MessageRun:
    """An admitted message whose engine has accepted it: its rate-limit headers,
    then its events (or the Message they make), read once."""

    def __init__(
        self,
        stream: MessageStream,
        generation: Generation,
        headers: dict[str, str],
        priority: Priority,
        settle: Callable[[MessageStream], None],
        *,
        model: str = "",
        metrics: Metrics | None = None,
        context: RequestContext | None = None,
        tracing: Tracing = _NOT_TRACED,
        span: Any = None,
        thread: ThreadTurn | None = None,
    ) -> None:
        self.stream = stream
        self.headers = headers
        self._generation = generation
        self._priority = priority
        self._settle = settle
        self._settled = False
        # Set by `message(settle=False)`: the caller settles, with `aclose()`, once the
        # reply has been sent.
        self._held = False
        self._model = model
        self._metrics = metrics or Metrics()
        self._context = context  # the HTTP request's, for the time to first token
        self._tracing = tracing
        self._span = span  # the generation's span, when traced
        self._thread = thread

    async def events(self, *, emit: bool = True) -> AsyncGenerator[list[StreamEvent], None]:
        """The API's events, in the batches `MessageStream.events` makes; without
        `emit` (a plain response, read by `message()`) only `message_stop`, the message
        built all the same."""
        timed = self._context is not None or self._span is not None
        try:
            async with (
                aclosing(self._generation.events) as source,
                aclosing(
                    self.stream.events(
                        source, emit=emit, on_first=self._first_content if timed else None
                    )
                ) as events,
            ):
                async for batch in events:
                    if self._thread is not None and isinstance(batch[-1], MessageStopEvent):
                        await self._keep_thread_turn()
                    yield batch
        except Exception as exc:
            self._metrics.generation_failed(
                self._model, exc.type if isinstance(exc, APIError) else "api_error"
            )
            if self._span is not None:
                self._tracing.failed(self._span, exc)
            if self._thread is not None:
                # Given back before the error goes out, so the client may continue from
                # the same reply again at once.
                with contextlib.suppress(Exception):
                    await self._thread.release()
            raise
        finally:
            if not self._held:
                self._finish()

    def _first_content(self) -> None:
        if self._context is not None:
            seconds = time.perf_counter() - self._context.started
            self._metrics.first_token(self._model, seconds)
            if self._span is not None:
                self._span.add_event("first_token", {"parley.time_to_first_token_s": seconds})

    async def _keep_thread_turn(self) -> None:
        assert self._thread is not None
        try:
            await self._thread.keep(self.stream.message)
        except Exception:
            # The reply itself is whole; a `continue` from it finds no thread, and the
            # SDKs then start a new one with the whole conversation.
            log.exception("message thread turn %s could not be kept", self.stream.message.id)

    async def message(self, *, settle: bool = True) -> Message:
        """The whole Message. With `settle=False` the run is settled only by `aclose()`,
        which the caller calls once the reply has left: at one request at a time, what
        follows the last byte is off the client's wait. A run that fails is settled
        before this raises, either way."""
        self._held = not settle
        try:
            # Closed here, not by the garbage collector, so that a cancelled request (the
            # client left, the drain deadline passed) is settled before this returns.
            with background() if self._priority == "batch" else nullcontext():
                async with aclosing(self.events(emit=False)) as events:
                    async for _ in events:
                        pass
        except BaseException:
            self._finish()
            raise
        return self.stream.message

    async def aclose(self) -> None:
        """Give the run up without reading it (the client went away first)."""
        try:
            await self._generation.aclose()
        finally:
            self._finish()

    def _finish(self) -> None:
        if not self._settled:
            self._settled = True
            if self._span is not None:
                self._end_span()
            with self._tracing.span("settle"):
                self._settle(self.stream)

    def _end_span(self) -> None:
        message, span = self.stream.message, self._span
        span.set_attribute("gen_ai.response.id", message.id)
        span.set_attribute("gen_ai.usage.input_tokens", message.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", message.usage.output_tokens)
        if message.stop_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [message.stop_reason])
        span.end()


class MessagePipeline:
    def __init__(
        self,
        registry: ModelRegistry,
        limiter: RateLimiter,
        usage: UsageRecorder,
        threads: Threads,
        *,
        images: ImageFetch | None,
        clock: Clock,
        spawn: Spawn,
        documents: DocumentFetch | None = None,
        files: FileService | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        signer: ThinkingSigner | None = None,
    ) -> None:
        self._signer = signer
        self._registry = registry
        self._limiter = limiter
        self._usage = usage
        self._threads = threads
        self._images = images
        self._documents = documents
        self._files = files
        self._clock = clock
        self._spawn = spawn
        self._metrics = metrics or Metrics()
        self._tracing = tracing or _NOT_TRACED

    async def open(
        self, key: ApiKey, params: MessageCreateParams, *, priority: Priority = "interactive"
    ) -> MessageRun:
        """Everything that can fail with an HTTP error happens here, before any byte of
        the response is sent."""
        # An HTTP request's (batch work has none): its model is labelled, its path traced.
        context = current_request() if priority == "interactive" else None
        tracing = self._tracing if context is not None else _NOT_TRACED
        entry = self._registry.resolve(params.model)
        if context is not None:
            context.model = entry.id
        with tracing.span("budget"):
            await self._limiter.check_budget(key, entry.id)
        if params.thread is None:
            return await self._open(key, entry, params, priority, None, context, tracing)
        thread = await self._threads.begin(key, entry.id, params)
        try:
            return await self._open(key, entry, thread.params, priority, thread, context, tracing)
        except asyncio.CancelledError:
            self._spawn(thread.release())
            raise
        except BaseException:
            # Given back before the error goes out, so the client may send it again.
            await thread.release()
            raise

    async def _open(
        self,
        key: ApiKey,
        entry: ModelEntry,
        params: MessageCreateParams,
        priority: Priority,
        thread: ThreadTurn | None,
        context: RequestContext | None,
        tracing: Tracing,
    ) -> MessageRun:
        engine = entry.engine
        edits = check_context_management(params.context_management, params.thinking)
        with tracing.span("prepare"):
            # A prompt cache is the key's own: another key never reads its entries.
            request = await generation_request(
                params, engine.capabilities, self._sources(key), self._signer, cache_scope=key.id
            )
            managed: ContextManagementResponse | None = None
            if params.context_management is not None:
                # Applied before the prompt is built: the engine sees the edited turns.
                edited = await apply_context_edits(request.turns, edits, _measure(engine, request))
                request = replace(request, turns=edited.turns)
                managed = ContextManagementResponse(applied_edits=edited.applied)
            check_max_tokens(request.max_tokens, entry.max_output_tokens, params.model)
            prepared = await engine.prepare(request)
        admission: Admission | None = None
        try:
            check_context(prepared.input_tokens, request.max_tokens, engine.context_window)
            if priority == "interactive":
                with tracing.span("admit"):
                    admission = await self._limiter.admit_message(
                        key, entry.id, prepared.input_tokens, request.max_tokens
                    )
        except BaseException:
            engine.discard(prepared)
            raise
        try:
            with background() if priority == "batch" else nullcontext(), tracing.span("open"):
                generation = await engine.open(prepared)
        except Exception:
            if admission is not None:
                # Before the refusal is answered, so the client's retry finds it back.
                await self._limiter.refund(admission)
            raise
        except BaseException:
            if admission is not None:  # cancelled: awaiting is not safe here
                self._spawn(self._limiter.refund(admission))
            raise
        stream = MessageStream(
            request,
            generation.input_tokens,
            cache=generation.cache,
            signer=self._signer,
            context_management=managed,
            diagnostics=_diagnostics(params),
        )
        span = tracing.start_span("generation")
        if span is not None:
            span.set_attribute("gen_ai.request.model", entry.id)
            span.set_attribute("gen_ai.request.max_tokens", request.max_tokens)
        return MessageRun(
            stream,
            generation,
            admission.headers if admission is not None else {},
            priority,
            lambda done: self._settle(key, entry, admission, done, priority, thread),
            model=entry.id,
            metrics=self._metrics,
            context=context,
            tracing=tracing,
            span=span,
            thread=thread,
        )

    async def count_tokens(self, key: ApiKey, params: CountTokensParams) -> TokenCount:
        """The prompt's size as the model would be given it, after any context edits,
        and the rate-limit headers (count_tokens has a request bucket of its own,
        api-spec §8)."""
        entry = self._registry.resolve(params.model)
        context = current_request()
        if context is not None:
            context.model = entry.id
        headers = await self._limiter.admit_count_tokens(key, entry.id)
        engine = entry.engine
        edits = check_context_management(params.context_management, params.thinking)
        counted = await counting_request(
            params, engine.capabilities, self._sources(key), self._signer
        )
        if params.context_management is None:
            return TokenCount(await engine.count_tokens(counted), headers)
        original = await engine.count_tokens(counted)
        edited = await apply_context_edits(counted.turns, edits, _measure(engine, counted))
        tokens = await engine.count_tokens(replace(counted, turns=edited.turns))
        return TokenCount(tokens, headers, original)

    def _sources(self, key: ApiKey) -> Sources:
        """Where this key's request may read sources from: URLs under the server's
        policy, and the key's own files."""
        return Sources(
            images=self._images,
            documents=self._documents,
            files=self._files.reader(key.id) if self._files is not None else None,
        )

    def _settle(
        self,
        key: ApiKey,
        entry: ModelEntry,
        admission: Admission | None,
        done: MessageStream,
        priority: Priority,
        thread: ThreadTurn | None,
    ) -> None:
        """However the message ended (completed, failed, cut off), the unused output
        reservation goes back and its usage is recorded; a thread turn that was not
        kept gives its claim back."""
        if thread is not None:
            self._spawn(thread.release())
        usage = done.usage
        if admission is not None and not self._limiter.settle_now(admission, usage.output_tokens):
            self._spawn(self._limiter.settle(admission, usage.output_tokens))
        self._metrics.tokens(entry.id, priority, usage)
        self._usage.record(
            UsageRecord(
                key_id=key.id,
                model=entry.id,
                at=datetime.fromtimestamp(self._clock(), UTC),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
            )
        )


def _measure(engine: Engine[Any], request: GenerationRequest) -> Measure:
    async def measure(turns: tuple[Turn, ...]) -> int:
        return await engine.count_tokens(replace(request, turns=turns))

    return measure


def _diagnostics(params: MessageCreateParams) -> dict[str, Any] | None:
    """`diagnostics` asks why the prompt cache missed the prefix of an earlier request;
    Parley keeps no record to compare with, which the API's answer for "cannot
    diagnose" says (`cache_miss_reason: {"type": "unavailable"}`)."""
    if params.diagnostics is None:
        return None
    return {"cache_miss_reason": {"type": "unavailable"}}
