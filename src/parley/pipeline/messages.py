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
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing, nullcontext
from datetime import UTC, datetime
from typing import Any, Literal

from parley.core.conversation import counting_request, generation_request
from parley.core.images import ImageFetch
from parley.core.messages import MessageStream, check_context, check_max_tokens
from parley.core.records import ApiKey, UsageRecord
from parley.core.slots import background
from parley.engines.base import Generation
from parley.engines.registry import ModelEntry, ModelRegistry
from parley.protocol.requests import CountTokensParams, MessageCreateParams
from parley.protocol.responses import Message
from parley.protocol.stream import StreamEvent
from parley.ratelimit.limiter import Admission, Clock, RateLimiter
from parley.store.usage_recorder import UsageRecorder

log = logging.getLogger(__name__)

Priority = Literal["interactive", "batch"]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


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
    ) -> None:
        self.stream = stream
        self.headers = headers
        self._generation = generation
        self._priority = priority
        self._settle = settle
        self._settled = False

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            async with aclosing(self._generation.events) as source:
                async for event in self.stream.events(source):
                    yield event
        finally:
            self._finish()

    async def message(self) -> Message:
        # Closed here, not by the garbage collector, so that a cancelled request (the
        # client left, the drain deadline passed) is settled before this returns.
        with background() if self._priority == "batch" else nullcontext():
            async with aclosing(self.events()) as events:
                async for _ in events:
                    pass
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
            self._settle(self.stream)


class MessagePipeline:
    def __init__(
        self,
        registry: ModelRegistry,
        limiter: RateLimiter,
        usage: UsageRecorder,
        *,
        images: ImageFetch | None,
        clock: Clock,
        spawn: Spawn,
    ) -> None:
        self._registry = registry
        self._limiter = limiter
        self._usage = usage
        self._images = images
        self._clock = clock
        self._spawn = spawn

    async def open(
        self, key: ApiKey, params: MessageCreateParams, *, priority: Priority = "interactive"
    ) -> MessageRun:
        """Everything that can fail with an HTTP error happens here, before any byte of
        the response is sent."""
        entry = self._registry.resolve(params.model)
        await self._limiter.check_budget(key, entry.id)
        engine = entry.engine
        request = await generation_request(params, engine.capabilities, self._images)
        check_max_tokens(request.max_tokens, entry.max_output_tokens, params.model)
        prepared = await engine.prepare(request)
        admission: Admission | None = None
        try:
            check_context(prepared.input_tokens, request.max_tokens, engine.context_window)
            if priority == "interactive":
                admission = await self._limiter.admit_message(
                    key, entry.id, prepared.input_tokens, request.max_tokens
                )
        except BaseException:
            engine.discard(prepared)
            raise
        try:
            with background() if priority == "batch" else nullcontext():
                generation = await engine.open(prepared)
        except BaseException:
            if admission is not None:
                self._spawn(self._limiter.refund(admission))
            raise
        stream = MessageStream(request, generation.input_tokens)
        return MessageRun(
            stream,
            generation,
            admission.headers if admission is not None else {},
            priority,
            lambda done: self._settle(key, entry, admission, done),
        )

    async def count_tokens(
        self, key: ApiKey, params: CountTokensParams
    ) -> tuple[int, dict[str, str]]:
        """The prompt's size as the model would be given it, and the rate-limit headers
        (count_tokens has a request bucket of its own, api-spec §8)."""
        entry = self._registry.resolve(params.model)
        headers = await self._limiter.admit_count_tokens(key, entry.id)
        engine = entry.engine
        counted = await counting_request(params, engine.capabilities, self._images)
        return await engine.count_tokens(counted), headers

    def _settle(
        self, key: ApiKey, entry: ModelEntry, admission: Admission | None, done: MessageStream
    ) -> None:
        """However the message ended (completed, failed, cut off), the unused output
        reservation goes back and its usage is recorded."""
        usage = done.usage
        if admission is not None:
            self._spawn(self._limiter.settle(admission, usage.output_tokens))
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
