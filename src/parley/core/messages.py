"""One message, from a validated request to the API's event sequence (api-spec §6).

Both the streaming and the plain response come from `message_events`: a plain
response is the same events collected into a Message, never re-parsed SSE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from parley.core.content_blocks import BlockWriter, parse_input
from parley.core.conversation import generation_request
from parley.core.generation import Finished, GenerationRequest, Meter, TextChunk, ToolCallStart
from parley.core.ids import message_id
from parley.core.image_sources import ImageFetcher
from parley.core.stops import StopMatch, StopSequenceMatcher
from parley.engines.base import Engine, PreparedGeneration
from parley.errors import InternalServerError, InvalidRequestError
from parley.protocol.requests import MessageCreateParams
from parley.protocol.responses import Message, StopReason, TextBlock, ToolUseBlock, Usage
from parley.protocol.stream import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    StreamEvent,
    TextDelta,
)

log = logging.getLogger(__name__)


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
    engine: Engine,
    params: MessageCreateParams,
    max_output_tokens: int,
    *,
    images: ImageFetcher | None = None,
) -> PreparedGeneration:
    """Everything that can fail with an HTTP error happens here, before any byte is sent.

    `images` fetches URL image sources under the server's policy; without one they
    are refused.
    """
    request: GenerationRequest = await generation_request(params, engine.capabilities, images)
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
    # Stop sequences apply to text only, never inside a tool call's input.
    matcher = StopSequenceMatcher(request.stop_sequences)
    blocks = BlockWriter()
    output_tokens = 0
    stop_reason: StopReason = "max_tokens"
    stop_sequence: str | None = None

    if request.max_tokens > 0:
        async with aclosing(engine.generate(prepared)) as stream:
            async for event in stream:
                output_tokens = meter.output_tokens = event.output_tokens
                if isinstance(event, Finished):
                    stop_reason = event.reason
                    if event.reason == "stop_sequence":
                        stop_sequence = event.stop_sequence
                    if event.input_tokens is not None:
                        input_tokens = meter.input_tokens = event.input_tokens
                    break
                if isinstance(event, TextChunk):
                    fed = matcher.feed(event.text)
                    if isinstance(fed, StopMatch):
                        for out in blocks.text(fed.text):
                            yield out
                        stop_reason, stop_sequence = "stop_sequence", fed.sequence
                        break
                    for out in blocks.text(fed):
                        yield out
                elif isinstance(event, ToolCallStart):
                    if request.tool_choice.mode == "none":
                        log.error("engine called tool %s under tool_choice none", event.name)
                        raise InternalServerError("Internal server error")
                    if blocks.calls and not request.tool_choice.parallel:
                        # disable_parallel_tool_use: at most one call (api-spec §5.4).
                        stop_reason = "tool_use"
                        break
                    for out in blocks.text(matcher.flush()):
                        yield out
                    for out in blocks.tool_call(event.name, event.id):
                        yield out
                else:
                    for out in blocks.tool_input(event.partial_json):
                        yield out
    if stop_reason != "stop_sequence":
        for out in blocks.text(matcher.flush()):
            yield out
    cut_off = stop_reason in ("max_tokens", "model_context_window_exceeded")
    for out in blocks.close(truncated=cut_off):
        yield out
    if blocks.calls and stop_reason == "end_turn":
        stop_reason = "tool_use"
    elif not blocks.calls and stop_reason == "tool_use":
        stop_reason = "end_turn"
    yield MessageDeltaEvent(
        delta=MessageDelta(stop_reason=stop_reason, stop_sequence=stop_sequence),
        usage=MessageDeltaUsage(output_tokens=output_tokens, input_tokens=input_tokens),
    )
    yield MessageStopEvent()


async def collect_message(events: AsyncGenerator[StreamEvent, None]) -> Message:
    """Accumulate events into the final Message, as the SDKs' stream helpers do (§7)."""
    message: Message | None = None
    inputs: dict[int, str] = {}
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, MessageStartEvent):
                message = event.message.model_copy(deep=True)
            elif message is None:
                raise RuntimeError(f"{event.type} before message_start")
            elif isinstance(event, ContentBlockStartEvent):
                message.content.append(event.content_block.model_copy(deep=True))
            elif isinstance(event, ContentBlockDeltaEvent):
                block = message.content[event.index]
                if isinstance(block, TextBlock) and isinstance(event.delta, TextDelta):
                    block.text += event.delta.text
                elif isinstance(event.delta, InputJSONDelta):
                    inputs[event.index] = inputs.get(event.index, "") + event.delta.partial_json
            elif isinstance(event, ContentBlockStopEvent):
                block = message.content[event.index]
                if isinstance(block, ToolUseBlock):
                    block.input = parse_input(inputs.pop(event.index, ""))
            elif isinstance(event, MessageDeltaEvent):
                message.stop_reason = event.delta.stop_reason
                message.stop_sequence = event.delta.stop_sequence
                message.usage.output_tokens = event.usage.output_tokens
                # Cumulative, as the SDKs' accumulators read it (api-spec §7).
                message.usage.input_tokens = event.usage.input_tokens
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
