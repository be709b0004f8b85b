"""HTTP/1.1 connections: uvicorn's httptools protocol, with the limits it lacks.

httptools (llhttp, in C) parses a request in about half the CPU time the pure-Python
h11 takes. uvicorn closes an idle keep-alive connection, but it has no deadline for a
request head that never ends, none for a body that stops arriving, none for a client
that stops reading its response, no bound on the size of a head, and it answers
malformed HTTP in plain text. Here:

- a request head must arrive within `header_timeout` of its first byte (or of the
  connection opening); otherwise 408 with the error envelope, and the connection
  closes (one that never sent a byte is closed silently, as an idle one would be);
- a head still incomplete past `MAX_HEAD_BYTES` (h11's limit, which Parley used to
  run on) is malformed HTTP;
- a body may pause at most `body_timeout` between two reads (time that uvicorn holds
  the body back because the app has not asked for it does not count); otherwise 408,
  or, when the response has already started, the connection is closed;
- a response the client does not read for `write_timeout` ends the connection, and
  with it the request's work (a stream's generation is closed and settled);
- beyond `max_connections` open connections, each request is answered with a
  retryable 529 and its connection closed;
- malformed HTTP gets the 400 envelope with a `request-id`, never plain text.

Where a request is, the parser's callbacks say: a message begins at its first byte,
its head ends with `on_headers_complete`, and its body with `on_message_complete`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from parley.core.ids import request_id
from parley.core.lifecycle import Signal
from parley.errors import APIError, InvalidRequestError, OverloadedError, RequestTimeoutError
from parley.server.client_watch import DEPARTURE
from parley.server.logs import access_line
from parley.server.middleware import send_error

MAX_HEAD_BYTES = 16 * 1024
# Bytes written in one turn of the event loop held back to leave in one send: the
# transports' own high-water mark (uvloop's and asyncio's default).
MAX_PENDING = 64 * 1024
# uvicorn's words for a request its parser rejects.
MALFORMED = "Invalid HTTP request received."

# Where the latest request on a connection is: None before its first byte.
_Phase = Literal["head", "body", "done"] | None


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    write_timeout: float
    max_connections: int
    organization_id: str


def raw_error(error: APIError, limits: ConnectionLimits) -> bytes:
    """A whole HTTP response for `error`, written past uvicorn (which has no app to ask
    for a request it never parsed) on a connection that then closes."""
    rid = request_id()
    body = json.dumps(error.envelope(rid, http=True)).encode()
    reason = {400: b"Bad Request", 408: b"Request Timeout"}.get(error.status, b"Error")
    head = [
        b"HTTP/1.1 %d %s" % (error.status, reason),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        b"request-id: " + rid.encode(),
        b"anthropic-organization-id: " + limits.organization_id.encode(),
        *(f"{name}: {value}".encode() for name, value in error.headers.items()),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class LimitedProtocol(HttpToolsProtocol):
    limits: ConnectionLimits  # set on the subclass `protocol_class` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: _Phase = None
        self._head_bytes = 0
        self._chunk_bytes = 0
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: Literal["head", "body"] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        # Requests whose response is not complete yet, told when their client goes.
        self._departures: list[tuple[RequestResponseCycle, Signal]] = []
        self.app = _CappedApp(self.app, self)
        # The access line is Parley's, written once the response has left
        # (server/middleware.py); uvicorn writes it before the body, on the reply's path.
        self.access_log = False

    # -- reading --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writer = CoalescingTransport(transport, self.loop)
        self.transport = self._writer
        self._read_deadline("head", self.limits.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = "head"
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = "body"
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            departure = Signal()
            # An ASGI extension's value is a dict (the ASGI spec, "Extensions").
            self.scope.setdefault("extensions", {})[DEPARTURE] = {"departure": departure}
            self._departures.append((cycle, departure))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = "done"
        # The rest of this chunk belongs to a request that may follow, in a share the
        # parser does not tell: it is not counted against that request's head.
        self._chunk_bytes = 0

    def data_received(self, data: bytes) -> None:
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_read()
            return
        phase = self._phase
        if phase == "head":
            self._head_bytes += self._chunk_bytes
            if self._head_bytes > MAX_HEAD_BYTES:
                self.send_400_response(MALFORMED)
            elif self._reading != "head" and not self._responding():
                self._read_deadline("head", self.limits.header_timeout)
        elif phase == "body":
            self._read_deadline("body", self.limits.body_timeout)
        elif phase == "done":
            self._cancel_read()
        # Before the first request's first byte, the deadline from the connection's
        # opening keeps running.

    def on_response_complete(self) -> None:
        # A finished response leaves now, not after what its task does next.
        self._writer.flush()
        self._departures = [(c, d) for c, d in self._departures if not c.response_complete]
        super().on_response_complete()
        if self.transport.is_closing():
            self._cancel_read()
        elif self._phase == "head" and self._reading != "head" and not self._responding():
            # A request sent behind this one: its head deadline was held off until now.
            self._read_deadline("head", self.limits.header_timeout)
        elif self._phase == "body" and self._reading != "body":
            self._read_deadline("body", self.limits.body_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read()
        self._cancel_write()
        super().connection_lost(exc)
        self._depart()

    def _depart(self) -> None:
        departures, self._departures = self._departures, []
        for cycle, departure in departures:
            if not cycle.response_complete:
                departure.fire()

    def _responding(self) -> bool:
        """Whether a request's response is still to be finished; the head of a request
        sent behind it waits for it, which is not the client's delay."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _read_deadline(self, what: Literal["head", "body"], seconds: float) -> None:
        self._cancel_read()
        self._reading = what
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _cancel_read(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = None
        self._reading = None

    def _read_timed_out(self) -> None:
        what, self._read_timer = self._reading, None
        if self.transport.is_closing():
            return
        if what == "body" and self.flow.read_paused:
            # uvicorn stopped reading: the app has not asked for more yet.
            self._read_deadline("body", self.limits.body_timeout)
            return
        cycle = self.cycle
        started = cycle is not None and cycle.response_started and what == "body"
        fresh = what == "head" and self._phase is None
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app sees http.disconnect; its sends go nowhere
            cycle.message_event.set()
            self._depart()
        if not started and not fresh:
            part = "headers" if what == "head" else "body"
            error = RequestTimeoutError(f"Timed out waiting for the request {part}")
            self.transport.write(raw_error(error, self.limits))
        self.transport.close()

    # -- writing --------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(
                self.limits.write_timeout, self._write_timed_out
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write()

    def _cancel_write(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
        self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        # close() would wait for the unread buffer to drain, which is what never happens.
        self.transport.abort()

    # -- malformed HTTP -------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._cancel_read()
        if self.transport.is_closing():
            return
        error = InvalidRequestError(msg)  # uvicorn's words: "Invalid HTTP request received."
        self.transport.write(raw_error(error, self.limits))
        self.transport.close()

    @property
    def open_connections(self) -> int:
        return len(self.connections)


class CoalescingTransport(asyncio.Transport):
    """What is written in one turn of the event loop leaves in one send.

    uvloop sends each write at once, and uvicorn writes a response's head, each body
    part and a chunked body's terminator separately: a plain reply was two sends and a
    stream that arrived in one piece three, each a system call and a wake-up of the
    client. Deferred to the end of the loop's turn they are one, a turn later at most;
    a response that is complete is sent at once (`flush`), and so is whatever passes
    `MAX_PENDING`: a stream whose events are all ready (a fast engine, a client that
    does not read) must still meet the real transport's flow control, which uvicorn's
    `FlowControl` holds, at every send, not once the whole reply is in memory."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size > MAX_PENDING:
            self.flush()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()


class _CappedApp:
    """Answers a retryable 529 instead of running the app while more connections are
    open than the process allows."""

    def __init__(self, app: ASGIApp, protocol: LimitedProtocol) -> None:
        self._app = app
        self._protocol = protocol

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self._protocol.limits
        if scope["type"] == "http" and self._protocol.open_connections > limits.max_connections:
            headers = [(b"anthropic-organization-id", limits.organization_id.encode())]

            async def with_ids(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = list(message["headers"]) + headers
                await send(message)

            rid = request_id()
            headers.append((b"request-id", rid.encode()))
            await send_error(with_ids, OverloadedError(), rid, close=True)
            access_line(scope, OverloadedError.status)
            return
        await self._app(scope, receive, send)


def protocol_class(limits: ConnectionLimits) -> type[LimitedProtocol]:
    return type("ParleyHttpProtocol", (LimitedProtocol,), {"limits": limits})
