"""One message, from a validated request to the API's event sequence (api-spec §6).

Both the streaming and the plain response come from `message_events`: a plain
response is the same events collected into a Message, never re-parsed SSE.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from parley.core.conversation import generation_request
from parley.core.generation import Finished, GenerationRequest, Meter
from parley.core.ids import message_id
from parley.core.stops import StopMatch, StopSequenceMatcher
from parley.engines.base import Engine, PreparedGeneration
from parley.errors import InvalidRequestError
from parley.protocol.requests import MessageCreateParams
from parley.protocol.responses import Message, StopReason, TextBlock, Usage
from parley.protocol.stream import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    StreamEvent,
    TextDelta,
)


def check_max_tokens(max_tokens: int, limit: int, model: str) -> None:
    if max_tokens > limit:
        raise InvalidRequestError(
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of "
            f"output tokens for {model}"
        )


def check_context(input_tokens: int, max_tokens: int, context: int) -> None:
    if input_tokens > context:
        raise InvalidRequestError(f"prompt is too long: {input_tokens} tokens > {context} maximum")
    if input_tokens + max_tokens > context:
        raise InvalidRequestError(
            f"input length and `max_tokens` exceed context limit: {input_tokens} + "
            f"{max_tokens} > {context}, decrease input length or `max_tokens` and try again"
        )


async def prepare_message(
    engine: Engine, params: MessageCreateParams, max_output_tokens: int
) -> PreparedGeneration:
    """Everything that can fail with an HTTP error happens here, before any byte is sent."""
    request: GenerationRequest = generation_request(params)
    check_max_tokens(request.max_tokens, max_output_tokens, params.model)
    prepared = await engine.prepare(request)
    check_context(prepared.input_tokens, request.max_tokens, engine.context_window)
    return prepared


async def message_events(
    engine: Engine,
    prepared: PreparedGeneration,
    *,
    msg_id: str | None = None,
    meter: Meter | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    request = prepared.request
    input_tokens = prepared.input_tokens
    meter = meter if meter is not None else Meter()
    meter.input_tokens = input_tokens
    yield MessageStartEvent(
        message=Message(
            id=msg_id or message_id(),
            model=request.model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=Usage(input_tokens=input_tokens, output_tokens=1),
        )
    )
    matcher = StopSequenceMatcher(request.stop_sequences)
    block_open = False
    output_tokens = 0
    stop_reason: StopReason = "max_tokens"
    stop_sequence: str | None = None

    def text_events(text: str) -> list[StreamEvent]:
        nonlocal block_open
        if not text:
            return []
        events: list[StreamEvent] = []
        if not block_open:
            block_open = True
            events += [
                ContentBlockStartEvent(index=0, content_block=TextBlock(text="")),
                PingEvent(),  # the real API pings right after the first block starts
            ]
        events.append(ContentBlockDeltaEvent(index=0, delta=TextDelta(text=text)))
        return events

    if request.max_tokens > 0:
        async with aclosing(engine.generate(prepared)) as stream:
            async for event in stream:
                output_tokens = meter.output_tokens = event.output_tokens
                if isinstance(event, Finished):
                    stop_reason = event.reason
                    break
                fed = matcher.feed(event.text)
                if isinstance(fed, StopMatch):
                    for out in text_events(fed.text):
                        yield out
                    stop_reason, stop_sequence = "stop_sequence", fed.sequence
                    break
                for out in text_events(fed):
                    yield out
    if stop_reason != "stop_sequence":
        for out in text_events(matcher.flush()):
            yield out
    if block_open:
        yield ContentBlockStopEvent(index=0)
    yield MessageDeltaEvent(
        delta=MessageDelta(stop_reason=stop_reason, stop_sequence=stop_sequence),
        usage=MessageDeltaUsage(output_tokens=output_tokens, input_tokens=input_tokens),
    )
    yield MessageStopEvent()


async def collect_message(events: AsyncGenerator[StreamEvent, None]) -> Message:
    """Accumulate events into the final Message, as the SDKs' stream helpers do (§7)."""
    message: Message | None = None
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, MessageStartEvent):
                message = event.message.model_copy(deep=True)
            elif message is None:
                raise RuntimeError(f"{event.type} before message_start")
            elif isinstance(event, ContentBlockStartEvent):
                message.content.append(event.content_block.model_copy())
            elif isinstance(event, ContentBlockDeltaEvent):
                block = message.content[event.index]
                if isinstance(block, TextBlock) and isinstance(event.delta, TextDelta):
                    block.text += event.delta.text
            elif isinstance(event, MessageDeltaEvent):
                message.stop_reason = event.delta.stop_reason
                message.stop_sequence = event.delta.stop_sequence
                message.usage.output_tokens = event.usage.output_tokens
    if message is None:
        raise RuntimeError("no message_start")
    return message


async def finalized(
    events: AsyncGenerator[StreamEvent, None], on_close: Callable[[], None]
) -> AsyncGenerator[StreamEvent, None]:
    """Pass `events` through and call `on_close` however they end: finished, failed,
    or closed early because the client went away."""
    try:
        async with aclosing(events) as stream:
            async for event in stream:
                yield event
    finally:
        on_close()
