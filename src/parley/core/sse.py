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
from parley.protocol.stream import MessageStartEvent, PingEvent, StreamEvent


def frame(name: str, data: dict[str, Any]) -> bytes:
    # Every event is named: both SDKs drop events without an `event:` line (§6.1).
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# api-version §19.7: stop_details travels only in message_delta.
_START_EXCLUDES = {"message": {"stop_details"}}


def event_frame(event: StreamEvent) -> bytes:
    # pydantic writes the JSON itself (compact, UTF-8): no dict in between.
    excludes = _START_EXCLUDES if isinstance(event, MessageStartEvent) else None
    data = event.model_dump_json(exclude=excludes)
    return b"event: " + event.type.encode() + b"\ndata: " + data.encode() + b"\n\n"


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
        if forget_cut is not None:
            forget_cut()
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

    Starlette cancels a request whose client went away through an anyio scope, which
    cancels it again at every await; an engine's clean-up (closing an upstream
    response, releasing a slot) would otherwise be cut short at its first await.
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
