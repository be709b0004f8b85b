"""What the upstream engines share: one HTTP call from `prepare()` to the end of
`generate()`, and server-sent events.

An upstream request is opened in `prepare()`, before Parley's response starts,
so that an upstream refusal (429, 5xx, a refused connection) reaches the client
as an HTTP error with its retry headers, and the router can try another backend
(api-spec §6.4: once a stream has its 200, errors can only be `error` events).
`generate()` then claims the open response and reads it. A claimed response is
closed when generation ends or the client goes away; one that is never claimed
(the request was refused after `prepare()`) is closed after `CLAIM_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from parley.engines.upstream_errors import transport_error
from parley.errors import APIError

log = logging.getLogger(__name__)

# Seconds an opened upstream response waits for `generate()` before it is closed.
CLAIM_TIMEOUT = 10.0
# Error bodies are read for their message only; a runaway body is cut here.
_MAX_ERROR_BODY = 64 * 1024


# -- server-sent events ----------------------------------------------------------------------


@dataclass(frozen=True)
class SSEEvent:
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Events of an SSE body: `event:` and `data:` fields, dispatched at blank lines;
    comments (`: ping`, which some servers send) and other fields are skipped."""
    name: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SSEEvent(name, "\n".join(data))
            name, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield SSEEvent(name, "\n".join(data))


def upstream_client(
    base_url: str,
    headers: dict[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        # The upstream queues requests itself; a pool limit here would only add a
        # second queue, with its own timeout, in front of it.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=128),
        transport=transport,
    )


# -- one upstream call -----------------------------------------------------------------------


# Closes in flight, kept referenced until they finish.
_closing: set[asyncio.Task[None]] = set()


class OpenStream:
    """An upstream response with a success status whose events are not read yet.

    The body is read by a task of its own, a few events ahead. The request's task
    may be cancelled again and again while it cleans up (Starlette cancels a
    request whose client went away through an anyio scope, which re-cancels on
    every await, and asyncio passes that on to whatever the task awaits); were
    the body read there, httpx's own clean-up would be cut short and the
    connection left open, the upstream generating on for nobody. The reader is
    cancelled once, by `aclose()`, and closes the connection properly."""

    def __init__(self, stack: AsyncExitStack, response: httpx.Response, *, upstream: str) -> None:
        self.response = response
        self.upstream = upstream
        # What the engine read while opening (the Anthropic engine's message_start).
        self.head: dict[str, Any] | None = None
        self._stack = stack
        self._events: asyncio.Queue[SSEEvent | BaseException | None] = asyncio.Queue(8)
        self._reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        try:
            async for event in sse_events(self.response.aiter_lines()):
                await self._events.put(event)
            await self._events.put(None)
        except httpx.HTTPError as exc:
            await self._events.put(transport_error(exc, upstream=self.upstream))
        except Exception as exc:
            await self._events.put(exc)

    async def next_event(self) -> SSEEvent | None:
        """The next event; None at the end of the body."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        item = await self._events.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        """Close the response, and with it its connection: the upstream sees the client
        go away and stops generating. Runs in a task of its own, shielded, for the
        reason in the class docstring."""
        closer = asyncio.ensure_future(self._close())
        _closing.add(closer)
        closer.add_done_callback(_closing.discard)
        await asyncio.shield(closer)

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait({self._reader})
        await self._stack.aclose()


ErrorReader = Callable[[int, bytes, httpx.Headers], APIError]


async def open_stream(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    *,
    upstream: str,
    error_from: ErrorReader,
) -> OpenStream:
    stack = AsyncExitStack()
    try:
        try:
            response = await stack.enter_async_context(client.stream("POST", path, json=body))
            if response.status_code >= 400:
                raw = b""
                async for piece in response.aiter_bytes():
                    raw += piece
                    if len(raw) > _MAX_ERROR_BODY:
                        break
                raise error_from(response.status_code, raw, response.headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc, upstream=upstream) from exc
    except BaseException:
        await stack.aclose()
        raise
    return OpenStream(stack, response, upstream=upstream)


Opener = Callable[[], Awaitable[OpenStream]]


class UpstreamCall:
    """One upstream request: opened by `start()` in prepare, claimed by `generate()`."""

    def __init__(self, opener: Opener, *, header_wait: float, claim_timeout: float) -> None:
        self._opener = opener
        self._header_wait = header_wait
        self._claim_timeout = claim_timeout
        self._task: asyncio.Task[OpenStream] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> OpenStream | None:
        """Open the request; raise its error if it fails within `header_wait` seconds.

        Returns the open stream, or None when the upstream has not answered yet (the
        request goes on; `claim()` waits for it)."""
        task = asyncio.ensure_future(self._opener())
        self._task = task
        try:
            await asyncio.wait({task}, timeout=self._header_wait)
        except asyncio.CancelledError:
            self.discard()
            raise
        if task.done() and task.exception() is not None:
            self._task = None
            raise task.exception()  # type: ignore[misc]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._claim_timeout, self._unclaimed)
        return task.result() if task.done() else None

    async def claim(self) -> OpenStream:
        """The open stream; the caller now owns it and must `aclose()` it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is None:  # never started, or closed while unclaimed: open it now
            task = asyncio.ensure_future(self._opener())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            _close_when_done(task)
            raise

    def discard(self) -> None:
        """Close the request without reading it (it will not be generated)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            _close_when_done(task)

    def _unclaimed(self) -> None:
        self._timer = None
        log.info("closing an upstream response that no generation claimed")
        self.discard()


def _close_when_done(task: asyncio.Task[OpenStream]) -> None:
    if not task.done():
        task.cancel()

    def closed(done: asyncio.Task[OpenStream]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        closer = asyncio.ensure_future(done.result().aclose())
        _closing.add(closer)
        closer.add_done_callback(_closing.discard)

    task.add_done_callback(closed)
