"""What the upstream engines share: the HTTP clients, one generation call from `open()`
to the end of its events, and server-sent events.

Two clients, for two kinds of call. The generation request, on every message's path,
goes through engines/http_client.py, an HTTP/1.1 client that does only what that call
needs, on httptools' parser in C: a gateway's own cost is what it adds to every
request. Calls made once at start or now and then (model listings, flavor detection,
token counts) stay on httpx, whose mock transport their tests use.

An upstream request is opened in `open()`, before Parley's response starts, so that an
upstream refusal (429, 5xx, a refused connection) reaches the client as an HTTP error
with its retry headers, and the router can try another backend (api-spec §6.4: once a
stream has its 200, errors can only be `error` events). The generation then claims the
open response and reads it. A claimed response is closed when generation ends or the
client goes away; one that is never claimed is closed after `CLAIM_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NamedTuple

import httpx
from pydantic_core import from_json, to_json

from parley.engines.http_client import Exchange, HTTPClient, Response, TransportError
from parley.engines.upstream_errors import transport_error
from parley.errors import APIError, InternalServerError

log = logging.getLogger(__name__)

# Seconds an opened upstream response waits for its generation to claim it.
CLAIM_TIMEOUT = 10.0
# Error bodies are read for their message only; a runaway body is cut here.
_MAX_ERROR_BODY = 64 * 1024
# An SSE `data:` line holds one event, which stays far below this.
_MAX_LINE = 2 * 1024 * 1024


def loads(text: str | bytes) -> Any:
    """JSON from an upstream: pydantic-core's parser, a third of the json module's time
    on a chunk of a stream (every token's); what it refuses and the json module takes
    (an escaped lone surrogate) is read by the json module, as before."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


# -- server-sent events ----------------------------------------------------------------------


class SSEEvent(NamedTuple):
    event: str | None
    data: str

    def json(self) -> Any:
        return loads(self.data)


def sse_event(block: str) -> SSEEvent | None:
    """The event of one block of lines (a blank line ends each): its `event:` and
    `data:` fields; comments (`: ping`, which some servers send) and other fields are
    skipped, and a block without data is no event."""
    if block.startswith("data:") and "\n" not in block:
        # Nearly every block: one data line.
        return SSEEvent(None, block[6:] if block[5:6] == " " else block[5:])
    name: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
        elif field == "event":
            name = value.removeprefix(" ")
    return SSEEvent(name, "\n".join(data)) if data else None


def upstream_client(
    base_url: str,
    headers: dict[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The client for calls off the message path."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=16),
        transport=transport,
    )


# -- one upstream call -----------------------------------------------------------------------


class OpenStream:
    """An upstream response with a success status whose events are not read yet.

    Closing is synchronous: the client drops an unfinished response's connection at once
    (the upstream sees the client go away and stops generating) and keeps a finished
    one for the next request. A request task that is cancelled while it cleans up (its
    client went away, the server is shutting down) therefore cannot leave it open."""

    def __init__(self, response: Response, *, upstream: str) -> None:
        self.response = response
        self.upstream = upstream
        # What the engine read while opening (the Anthropic engine's message_start).
        self.head: dict[str, Any] | None = None
        # Set by the engine once it has read the reply's end marker ([DONE],
        # message_stop): closing then keeps the connection for the next request.
        self.ended = False
        # Whole lines not yet dispatched as events, from `_at` on; the bytes of a
        # line still arriving.
        self._text = ""
        self._at = 0
        self._partial = b""
        self._ended = False

    def buffered_event(self) -> SSEEvent | None:
        """The next event if it has arrived whole already; None otherwise (nothing is
        waited for, and a partly arrived event stays for `next_event`)."""
        text = self._text
        while (end := text.find("\n\n", self._at)) >= 0:
            block, self._at = text[self._at : end], end + 2
            event = sse_event(block.lstrip("\n")) if block else None
            if event is not None:
                return event
        return None

    async def next_event(self) -> SSEEvent | None:
        """The next event; None at the end of the body. The body is read as it comes,
        everything that has arrived at once, and cut into events here: a line at a
        time through a stream reader cost more than the rest of the event's path."""
        while True:
            event = self.buffered_event()
            if event is not None:
                return event
            if self._ended:
                return None
            try:
                piece = await self.response.readany()
            except TransportError as exc:
                raise transport_error(exc, upstream=self.upstream) from exc
            if not piece:
                # The body's end: its last line, then a blank one that dispatches it.
                self._ended = True
                whole, self._partial = self._partial + b"\n\n", b""
            else:
                buffer = self._partial + piece
                cut = buffer.rfind(b"\n") + 1
                whole, self._partial = buffer[:cut], buffer[cut:]
                if len(self._partial) > _MAX_LINE:
                    error = ValueError(f"an event line longer than {_MAX_LINE} bytes")
                    raise transport_error(error, upstream=self.upstream)
            if whole:
                self._add(whole.decode("utf-8", "replace"))

    def _add(self, lines: str) -> None:
        if "\r" in lines:
            lines = "\n".join(line.rstrip("\r") for line in lines.split("\n"))
        self._text = self._text[self._at :] + lines
        self._at = 0

    async def json(self) -> Any:
        """The whole body as JSON (a reply asked for in one piece)."""
        try:
            raw = await self.response.read()
        except TransportError as exc:
            raise transport_error(exc, upstream=self.upstream) from exc
        try:
            return loads(raw)
        except ValueError:
            raise InternalServerError("Internal server error") from None

    def close(self) -> None:
        self.response.close(ended=self.ended)


ErrorReader = Callable[[int, bytes, Mapping[str, str]], APIError]


async def open_response(
    response: Response, *, upstream: str, error_from: ErrorReader
) -> OpenStream:
    """The response, if its status is a success; its error, raised, if not."""
    if response.status < 400:
        return OpenStream(response, upstream=upstream)
    try:
        raw = b""
        while len(raw) <= _MAX_ERROR_BODY and (piece := await response.readany()):
            raw += piece
    except TransportError as exc:
        raise transport_error(exc, upstream=upstream) from exc
    finally:
        response.close()
    raise error_from(response.status, raw, response.headers)


# What an upstream call does with its response's head: the open stream, or its error
# raised; the response is closed on a failure.
Opened = Callable[[Response], Coroutine[Any, Any, OpenStream]]


class UpstreamCall:
    """One upstream request: opened by `start()` in prepare, claimed by `generate()`.

    Everything runs in the caller's task, with no task of its own: it is on every
    message's path. The request is sent (connecting within the connect timeout), its
    head waited for up to `header_wait` and, if it has not come by then, waited for
    again by `claim()`; the request goes on in between, watched by its connection's
    read timeout. What follows the head before the stream is open (an error's body,
    the Anthropic engine's `message_start`) is read at once."""

    def __init__(
        self,
        client: HTTPClient,
        path: str,
        body: dict[str, Any],
        *,
        upstream: str,
        opened: Opened,
        header_wait: float,
        claim_timeout: float,
    ) -> None:
        self._client = client
        self._path = path
        self._body = body
        self._upstream = upstream
        self._opened = opened
        self._header_wait = header_wait
        self._claim_timeout = claim_timeout
        self._exchange: Exchange | None = None
        self._stream: OpenStream | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> OpenStream | None:
        """Open the request; raise its error if it fails within `header_wait` seconds.

        Returns the open stream, or None when the upstream has not answered yet (the
        request goes on; `claim()` waits for it)."""
        try:
            await self._send()
            await self._head(self._header_wait)
        except BaseException:
            self.discard()
            raise
        self._timer = asyncio.get_running_loop().call_later(self._claim_timeout, self._unclaimed)
        return self._stream

    async def claim(self) -> OpenStream:
        """The open stream; the caller now owns it and must `aclose()` it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self._stream is None:
                if self._exchange is None:
                    # Never started, or closed while unclaimed: open it now.
                    await self._send()
                await self._head(None)
        except BaseException:
            self.discard()
            raise
        stream, self._stream = self._stream, None
        assert stream is not None
        return stream

    def discard(self) -> None:
        """Close the request without reading it (it will not be generated)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.close()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    async def _send(self) -> None:
        try:
            # Compact UTF-8 JSON, as json.dumps(separators=(",", ":"), ensure_ascii=False)
            # writes it, in a seventh of its time.
            self._exchange = await self._client.send(
                self._path, to_json(self._body), "application/json"
            )
        except TransportError as exc:
            raise transport_error(exc, upstream=self._upstream) from exc

    async def _head(self, wait: float | None) -> None:
        exchange = self._exchange
        assert exchange is not None
        try:
            response = await exchange.head(wait)
        except TransportError as exc:
            raise transport_error(exc, upstream=self._upstream) from exc
        if response is not None:
            self._exchange = None
            self._stream = await self._opened(response)

    def _unclaimed(self) -> None:
        self._timer = None
        log.info("closing an upstream response that no generation claimed")
        self.discard()
