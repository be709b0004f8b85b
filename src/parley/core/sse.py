"""SSE framing (api-spec §6.1, §6.4) and idle pings (§6.2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

from parley.core.lifecycle import Lifecycle
from parley.errors import APIError, OverloadedError
from parley.protocol.stream import (
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)


def frame(name: str, data: dict[str, Any]) -> bytes:
    # Every event is named: both SDKs drop events without an `event:` line (§6.1).
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# api-version §19.7: stop_details travels only in message_delta.
_START_EXCLUDES = {"message": {"stop_details"}}


def event_frame(event: StreamEvent) -> bytes:
    if isinstance(event, ContentBlockDeltaEvent):
        delta = event.delta
        one_string = _ONE_STRING_DELTAS.get(type(delta))
        if one_string is not None:
            field, template = one_string
            return template % (event.index, _json_string(getattr(delta, field)).encode())
    elif isinstance(event, ContentBlockStopEvent):
        return _BLOCK_STOP % event.index
    elif isinstance(event, PingEvent):
        return _PING
    elif isinstance(event, MessageStopEvent):
        return _MESSAGE_STOP
    # pydantic writes the JSON itself (compact, UTF-8): no dict in between.
    excludes = _START_EXCLUDES if isinstance(event, MessageStartEvent) else None
    data = event.model_dump_json(exclude=excludes)
    return b"event: " + event.type.encode() + b"\ndata: " + data.encode() + b"\n\n"


# The events of every token, and the fixed ones, written without pydantic's serializer,
# whose call cost several times the rest of their path; the same bytes it writes
# (compact, UTF-8, its field order), which tests/core/test_sse_frames.py holds them to.
def _delta_frame(kind: str, field: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        + f'"delta":{{"type":"{kind}","{field}":'.encode()
        + b"%s}}\n\n"
    )


# A delta type: its one field, and its frame with the index and the field's JSON to fill.
_ONE_STRING_DELTAS: dict[type, tuple[str, bytes]] = {
    TextDelta: ("text", _delta_frame("text_delta", "text")),
    InputJSONDelta: ("partial_json", _delta_frame("input_json_delta", "partial_json")),
    ThinkingDelta: ("thinking", _delta_frame("thinking_delta", "thinking")),
}
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def error_frame(error: APIError) -> bytes:
    return frame("error", error.envelope())


# Events a stream reads ahead of a client that does not keep up.
_AHEAD = 64


async def with_pings(
    events: AsyncIterator[StreamEvent], interval: float, lifecycle: Lifecycle | None = None
) -> AsyncGenerator[list[StreamEvent], None]:
    """`events` in batches, adding a ping whenever none arrived for `interval` seconds.

    The source is read by a separate task, so that waiting for it never cancels it;
    closing this iterator cancels that task, which closes the source (and with it the
    engine's generation). A batch is everything the source produced since the last
    one was taken: what an upstream delivered in one read goes out in one write, not
    one write (and one wake-up of the client) per event. Pings come from one timer
    per interval, not from a timeout around every event.

    At `lifecycle`'s drain deadline, the source is closed and the stream ends with
    `overloaded_error`, which a client retries, instead of a cut connection.
    """
    loop = asyncio.get_running_loop()
    pending: deque[tuple[str, Any]] = deque()
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()
    last = loop.time()  # when the last event (or ping) was handed over

    def hand(kind: str, value: Any = None) -> None:
        pending.append((kind, value))
        arrived.set()

    async def pump() -> None:
        nonlocal last
        try:
            async for event in events:
                hand("event", event)
                last = loop.time()
                if len(pending) >= _AHEAD:
                    room.clear()
                    await room.wait()
            hand("end")
        except Exception as exc:
            hand("error", exc)

    timer: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal last, timer
        now = loop.time()
        if now - last >= interval and not pending:
            hand("ping")
            last = now
        due = last + interval
        timer = loop.call_at(due if due > now else now + interval, tick)

    task = asyncio.create_task(pump())
    timer = loop.call_at(last + interval, tick)

    def cut() -> None:
        if timer is not None:
            timer.cancel()
        task.cancel()
        task.add_done_callback(after_cut)

    def after_cut(_: asyncio.Task[None]) -> None:
        # Finished just in time: what it handed over still goes out, and is whole.
        if not any(kind == "end" for kind, _ in pending):
            hand("stop")

    forget_cut = lifecycle.on_cut(cut) if lifecycle is not None else None
    try:
        while True:
            while not pending:
                arrived.clear()
                await arrived.wait()
            batch: list[StreamEvent] = []
            while pending:
                kind, value = pending.popleft()
                if kind == "event":
                    batch.append(value)
                elif kind == "ping":
                    batch.append(PingEvent())
                else:
                    if batch:
                        yield batch
                    if kind == "error":
                        raise value
                    if kind == "stop":
                        raise OverloadedError("Overloaded")
                    return
            room.set()
            yield batch
    finally:
        if timer is not None:
            timer.cancel()
            # `tick` holds the handle that holds `tick`: a cycle otherwise left for the
            # garbage collector on every stream.
            timer = None
        if forget_cut is not None:
            forget_cut()
        # A pump that ran to its end has read the source to its end (or to the error
        # that ended it): nothing is left to close, which is the common case.
        if not task.done() or task.cancelled():
            task.cancel()
            await _despite_cancellation(_close_source(task, events))


async def _close_source(pump: asyncio.Task[None], events: AsyncIterator[StreamEvent]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _despite_cancellation(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end, then pass on any cancellation received meanwhile.

    A request whose client went away is cancelled while its stream is read (and a
    server shutting down may cancel it again); an engine's clean-up (closing an
    upstream response, releasing a slot) would otherwise be cut short at its first
    await.
    """
    job = asyncio.ensure_future(cleanup)
    cancelled = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not job.cancelled():
            job.exception()  # retrieved: the cancellation is what the caller must see
        raise asyncio.CancelledError
    job.result()
