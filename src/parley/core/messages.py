"""One message, from an engine's neutral events to the API's event sequence (api-spec §6).

Both the streaming and the plain response come from `MessageStream`: a plain
response is the Message the same events built, never re-parsed SSE.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from parley.core.citations import wire_citation
from parley.core.content_blocks import BlockWriter
from parley.core.generation import (
    CacheUsage,
    CitationChunk,
    EngineEvent,
    Finished,
    GenerationRequest,
    RedactedThinking,
    TextBlockStart,
    TextChunk,
    ThinkingChunk,
    ThinkingSignature,
    ToolCallStart,
)
from parley.core.ids import message_id
from parley.core.stops import StopMatch, StopSequenceMatcher
from parley.core.thinking import ThinkingSigner
from parley.core.tool_schemas import value_errors
from parley.errors import InternalServerError, InvalidRequestError
from parley.protocol.responses import (
    ContextManagementResponse,
    Message,
    StopReason,
    TextBlock,
    ToolUseBlock,
    Usage,
)
from parley.protocol.stream import (
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    StreamEvent,
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


class MessageStream:
    """The API events of one message, and the `message` they add up to.

    `message` grows as the events are produced: its usage is right however the
    events end (finished, failed, or closed early because the client went away),
    which is what usage settlement reads.
    """

    def __init__(
        self,
        request: GenerationRequest,
        input_tokens: int,
        *,
        msg_id: str | None = None,
        cache: CacheUsage | None = None,
        signer: ThinkingSigner | None = None,
        context_management: ContextManagementResponse | None = None,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        self.request = request
        self._signer = signer
        self.message = Message(
            id=msg_id or message_id(),
            model=request.model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=Usage(input_tokens=input_tokens, output_tokens=0),
            context_management=context_management,
            diagnostics=diagnostics,
        )
        if cache is not None:
            self._cached(cache)

    def _cached(self, cache: CacheUsage) -> None:
        usage = self.message.usage
        usage.cache_read_input_tokens = cache.read_input_tokens
        usage.cache_creation_input_tokens = cache.creation_input_tokens
        usage.cache_creation.ephemeral_5m_input_tokens = cache.ephemeral_5m_input_tokens
        usage.cache_creation.ephemeral_1h_input_tokens = cache.ephemeral_1h_input_tokens

    @property
    def usage(self) -> Usage:
        return self.message.usage

    async def events(
        self,
        source: AsyncIterator[EngineEvent],
        *,
        emit: bool = True,
        on_first: Callable[[], None] | None = None,
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """The API's events for an engine's events, in batches: `message_start`, then
        what each engine event makes, then the end (`message_delta`, `message_stop`).
        A batch goes to the client in one write. The caller closes `source`.
        `on_first` is called as the first content block starts. Without `emit`, for a
        plain response, the message is built the same way and the only batch is the
        last event, `message_stop`."""
        request, usage = self.request, self.message.usage
        if emit:
            yield [MessageStartEvent(message=self._started())]
        # Stop sequences apply to text only, never inside a tool call's input.
        matcher = StopSequenceMatcher(request.stop_sequences)
        sign = self._signer.sign if self._signer is not None else None
        blocks = BlockWriter(
            self.message.content,
            self._check_call,
            sign,
            omit_thinking=request.thinking.omitted,
            emit=emit,
            on_first=on_first,
        )
        stop_reason: StopReason = "max_tokens"
        stop_sequence: str | None = None
        documents = request.documents

        if request.max_tokens > 0:
            async for event in source:
                usage.output_tokens = event.output_tokens
                if isinstance(event, Finished):
                    stop_reason = event.reason
                    if event.reason == "stop_sequence":
                        stop_sequence = event.stop_sequence
                    if event.input_tokens is not None:
                        usage.input_tokens = event.input_tokens
                    if event.cache is not None:
                        self._cached(event.cache)
                    if event.stop_details is not None:
                        self.message.stop_details = dict(event.stop_details)
                    break
                if isinstance(event, TextChunk):
                    fed = matcher.feed(event.text)
                    if isinstance(fed, StopMatch):
                        if out := blocks.text(fed.text):
                            yield out
                        stop_reason, stop_sequence = "stop_sequence", fed.sequence
                        break
                    out = blocks.text(fed)
                elif isinstance(event, TextBlockStart):
                    # Held-back text belongs to the block before the split.
                    out = blocks.text(matcher.flush()) + blocks.close()
                elif isinstance(event, CitationChunk):
                    out = blocks.citation(wire_citation(event.citation, documents))
                elif isinstance(event, ThinkingChunk):
                    out = blocks.text(matcher.flush()) + blocks.thinking(event.text)
                elif isinstance(event, ThinkingSignature):
                    out = blocks.signature(event.signature)
                elif isinstance(event, RedactedThinking):
                    out = blocks.text(matcher.flush()) + blocks.redacted_thinking(event.data)
                elif isinstance(event, ToolCallStart):
                    if request.tool_choice.mode == "none":
                        log.error("engine called tool %s under tool_choice none", event.name)
                        raise InternalServerError("Internal server error")
                    if blocks.calls and not request.tool_choice.parallel:
                        # disable_parallel_tool_use: at most one call (api-spec §5.4).
                        stop_reason = "tool_use"
                        break
                    out = blocks.text(matcher.flush()) + blocks.tool_call(event.name, event.id)
                else:
                    out = blocks.tool_input(event.partial_json)
                if out:
                    yield out
        last = blocks.text(matcher.flush()) if stop_reason != "stop_sequence" else []
        cut_off = stop_reason in ("max_tokens", "model_context_window_exceeded")
        last += blocks.close(truncated=cut_off)
        if blocks.calls and stop_reason == "end_turn":
            stop_reason = "tool_use"
        elif not blocks.calls and stop_reason == "tool_use":
            stop_reason = "end_turn"
        if stop_reason == "end_turn" and request.output_schema is not None:
            # The reply as it was still goes out before a failure to match the schema.
            if last:
                yield last
                last = []
            self._check_output()
        self.message.stop_reason = stop_reason
        self.message.stop_sequence = stop_sequence
        if emit:
            last.append(
                MessageDeltaEvent(
                    delta=MessageDelta(
                        stop_reason=stop_reason,
                        stop_sequence=stop_sequence,
                        stop_details=self.message.stop_details,
                    ),
                    usage=MessageDeltaUsage(
                        output_tokens=usage.output_tokens,
                        input_tokens=usage.input_tokens,
                        cache_creation_input_tokens=usage.cache_creation_input_tokens,
                        cache_read_input_tokens=usage.cache_read_input_tokens,
                    ),
                    context_management=self.message.context_management,
                )
            )
            last.append(MessageStopEvent())
        else:
            last = [MessageStopEvent()]
        yield last

    def _started(self) -> Message:
        """The message as `message_start` carries it: no content yet, and the real
        API's 1 output token (§6.3); what the server did to the context is reported
        with the stop."""
        message = self.message
        return message.model_copy(
            update={
                "content": [],
                "usage": message.usage.model_copy(update={"output_tokens": 1}),
                "context_management": None,
            }
        )

    def _check_output(self) -> None:
        """A finished structured reply validates against its schema (a grammar or the
        upstream guarantees it); one that does not is the server's failure, never
        invalid data with a 200. A reply cut off by max_tokens is returned as it is,
        as the API documents."""
        assert self.request.output_schema is not None
        text = "".join(b.text for b in self.message.content if isinstance(b, TextBlock))
        if not text and any(isinstance(b, ToolUseBlock) for b in self.message.content):
            return  # the model called a tool instead of answering
        if not _is_valid_json_value(self.request.output_schema, text):
            log.error("structured output does not match its schema: %r", text[:200])
            raise InternalServerError("Internal server error")

    def _check_call(self, block: ToolUseBlock) -> None:
        tool = self.request.tool(block.name)
        if tool is None:
            return
        problems = value_errors(tool.input_schema, block.input)
        if problems and tool.strict:
            # `strict: true` guarantees a valid input; a backend that broke it fails
            # the message rather than pass the call on.
            log.error("strict tool %s input does not match its schema: %s", tool.name, problems)
            raise InternalServerError("Internal server error")
        if problems:
            # Only a schema an engine could not enforce fully gets here (the embedded
            # engine's grammar drops what it cannot express); the call is passed on.
            log.warning("tool %s input does not match its schema: %s", tool.name, problems)


def _is_valid_json_value(schema: Any, text: str) -> bool:
    # `input_errors` reads objects only; a schema may describe any JSON value.
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return not value_errors(schema, value)


async def collect_message(stream: MessageStream, source: AsyncIterator[EngineEvent]) -> Message:
    """Run the events to the end and return the Message they built."""
    async for _ in stream.events(source):
        pass
    return stream.message
