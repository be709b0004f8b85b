"""A message's events as `text/event-stream` (api-spec §6), written straight to ASGI.

Starlette's StreamingResponse sends its head before the first event exists, which is
a write (and a wake-up of the client) of its own, and on uvicorn (ASGI 2.3) wraps every
stream in an anyio task group to notice a disconnect. Here the head waits for the
first batch of events, which is ready at once (`message_start` needs nothing from the
engine), so the two leave in one write.

The events are read in the request's own task, a batch at a time (what one engine
event makes), and each batch is one send; what is sent in one turn of the event loop
leaves in one write (server/connections.py). The last batch, which ends with
`message_stop`, completes the response, so it leaves before the run is settled. A
disconnect, or the drain deadline, cancels the reading through `ClientWatch`; at the
deadline the stream ends with `overloaded_error`, which a client retries, instead of
a cut connection. Idle pings (§6.2) come from one timer per interval, sent from a task
of their own only when the stream has been quiet that long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from parley.core.lifecycle import Lifecycle
from parley.core.sse import PING_FRAME, error_frame, event_frame
from parley.errors import APIError, InternalServerError, OverloadedError
from parley.protocol.stream import MessageStopEvent, StreamEvent
from parley.server.client_watch import ClientWatch

log = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream; charset=utf-8"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class EventStreamResponse(Response):
    def __init__(
        self,
        batches: AsyncGenerator[list[StreamEvent], None],
        headers: Mapping[str, str],
        on_close: Callable[[], Awaitable[None]],
        *,
        ping_interval: float,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.status_code = 200
        self.media_type = MEDIA_TYPE
        self.background = None
        self.init_headers({**SSE_HEADERS, **headers})
        self._batches = batches
        self._on_close = on_close
        self._ping_interval = ping_interval
        self._lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = _Writer(send, self.raw_headers, self._ping_interval)
        try:
            async with (
                ClientWatch(scope, receive, self._lifecycle, quiet=True) as watch,
                aclosing(self._batches) as batches,
            ):
                try:
                    async for batch in batches:
                        last = isinstance(batch[-1], MessageStopEvent)
                        await writer.write(b"".join(map(event_frame, batch)), end=last)
                except APIError as exc:
                    # After the 200, failures travel as an `error` event (§6.4).
                    await writer.write(error_frame(exc), end=True)
                except Exception:
                    log.exception("stream failed")
                    error = InternalServerError("Internal server error")
                    await writer.write(error_frame(error), end=True)
            if watch.reason == "cut":
                await writer.write(error_frame(OverloadedError()), end=True)
            elif watch.reason is None:
                await writer.write(b"", end=True)
        finally:
            writer.stop()
            # A stream given up before it ended (the client left) still closes its
            # generation and settles its usage.
            await self._on_close()


class _Writer:
    """The response's sends, in order: the head with the first body, then bodies, and a
    ping from the timer's task whenever nothing was sent for `interval` seconds."""

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], interval: float) -> None:
        self._send = send
        self._headers = headers
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._started = False
        self._ended = False
        self._sending = False
        self._last = self._loop.time()
        self._ping: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            self._last + interval, self._tick
        )

    async def write(self, body: bytes, *, end: bool = False) -> None:
        if self._ping is not None and not self._ping.done():
            await self._ping  # sent whole before what follows it
        await self._put(body, end)

    async def _put(self, body: bytes, end: bool) -> None:
        if self._ended:
            return
        self._ended = end
        self._sending = True
        try:
            if not self._started:
                self._started = True
                head = {"type": "http.response.start", "status": 200, "headers": self._headers}
                await self._send(head)
            await self._send({"type": "http.response.body", "body": body, "more_body": not end})
        finally:
            self._sending = False
            self._last = self._loop.time()

    def _tick(self) -> None:
        now = self._loop.time()
        if now - self._last >= self._interval and not self._sending and not self._ended:
            self._ping = self._loop.create_task(self._put(PING_FRAME, False))
            self._last = now
        due = self._last + self._interval
        self._timer = self._loop.call_at(due if due > now else now + self._interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            # `_tick` holds the handle that holds `_tick`: a cycle otherwise left for
            # the garbage collector on every stream.
            self._timer = None
        ping = self._ping
        if ping is not None:
            if not ping.done():
                ping.cancel()
            elif not ping.cancelled() and ping.exception() is not None:
                log.warning("a ping could not be sent: %r", ping.exception())
