"""HTTP/1.1 connections: uvicorn's h11 protocol, with the limits it lacks.

uvicorn closes an idle keep-alive connection, but it has no deadline for a request
head that never ends, none for a body that stops arriving, none for a client that
stops reading its response, and it answers malformed HTTP in plain text. Here:

- a request head must arrive within `header_timeout` of its first byte (or of the
  connection opening); otherwise 408 with the error envelope, and the connection
  closes (one that never sent a byte is closed silently, as an idle one would be);
- a body may pause at most `body_timeout` between two reads (time that uvicorn holds
  the body back because the app has not asked for it does not count); otherwise 408,
  or, when the response has already started, the connection is closed;
- a response the client does not read for `write_timeout` ends the connection, and
  with it the request's work (a stream's generation is closed and settled);
- beyond `max_connections` open connections, each request is answered with a
  retryable 529 and its connection closed;
- malformed HTTP gets the 400 envelope with a `request-id`, never plain text.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from parley.core.ids import request_id
from parley.errors import APIError, InvalidRequestError, OverloadedError, RequestTimeoutError
from parley.server.middleware import send_error


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    write_timeout: float
    max_connections: int
    organization_id: str


def raw_error(error: APIError, limits: ConnectionLimits) -> bytes:
    """A whole HTTP response for `error`, written past h11 (which cannot answer a
    request it never parsed) on a connection that then closes."""
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


class LimitedH11Protocol(H11Protocol):
    limits: ConnectionLimits  # set on the subclass `protocol_class` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: str | None = None  # "head", "body" or None
        self._write_timer: asyncio.TimerHandle | None = None
        self.app = _CappedApp(self.app, self)

    # -- reading --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline("head", self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_reading(got_data=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_reading(got_data=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read()
        self._cancel_write()
        super().connection_lost(exc)

    def _watch_reading(self, *, got_data: bool) -> None:
        if self.transport.is_closing():
            self._cancel_read()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Between requests uvicorn's keep-alive timer closes an idle connection; the
            # head deadline starts with the first byte of the next request.
            partial = bool(self.conn.trailing_data[0])
            if partial and self._reading != "head":
                self._read_deadline("head", self.limits.header_timeout)
            elif not partial and self._reading == "head" and got_data:
                self._cancel_read()
        elif state is h11.SEND_BODY:
            if got_data or self._reading != "body":
                self._read_deadline("body", self.limits.body_timeout)
        else:
            self._cancel_read()

    def _read_deadline(self, what: str, seconds: float) -> None:
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
        fresh = what == "head" and not self.conn.trailing_data[0] and cycle is None
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app sees http.disconnect; its sends go nowhere
            cycle.message_event.set()
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
        error = InvalidRequestError(msg)  # uvicorn's words: "Invalid HTTP request received."
        self.transport.write(raw_error(error, self.limits))
        self.transport.close()

    @property
    def open_connections(self) -> int:
        return len(self.connections)


class _CappedApp:
    """Answers a retryable 529 instead of running the app while more connections are
    open than the process allows."""

    def __init__(self, app: ASGIApp, protocol: LimitedH11Protocol) -> None:
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
            return
        await self._app(scope, receive, send)


def protocol_class(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    return type("ParleyH11Protocol", (LimitedH11Protocol,), {"limits": limits})
