"""A message's events as `text/event-stream` (api-spec §6), written straight to ASGI.

Starlette's StreamingResponse sends its head before the first event exists, which is
a write (and a wake-up of the client) of its own, and on uvicorn (ASGI 2.3) wraps every
stream in an anyio task group to notice a disconnect. Here the head waits for the
first batch of events, which is ready at once (`message_start` needs nothing from the
engine), so the two leave in one write; a disconnect stops the stream through
`ClientWatch`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from parley.core.sse import error_frame, event_frame
from parley.errors import APIError, InternalServerError
from parley.protocol.stream import StreamEvent
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
    ) -> None:
        self.status_code = 200
        self.media_type = MEDIA_TYPE
        self.background = None
        self.init_headers({**SSE_HEADERS, **headers})
        self._batches = batches
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        started = False
        try:
            async with ClientWatch(receive, quiet=True), aclosing(_frames(self._batches)) as frames:
                async for chunk in frames:
                    if not started:
                        started = True
                        await send(head)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if not started:
                    await send(head)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # A stream given up before it ended (the client left) still closes its
            # generation and settles its usage.
            await self._on_close()


async def _frames(batches: AsyncGenerator[list[StreamEvent], None]) -> AsyncGenerator[bytes, None]:
    try:
        async with aclosing(batches):
            async for batch in batches:
                yield b"".join(event_frame(event) for event in batch)
    except APIError as exc:
        # After the 200, failures travel as an `error` event and the stream ends (§6.4).
        yield error_frame(exc)
    except Exception:
        log.exception("stream failed")
        yield error_frame(InternalServerError("Internal server error"))
