"""The generation request's HTTP/1.1 client: asyncio's transports, httptools' parser.

Every message that goes to an upstream makes one POST, so the client's own cost is
part of what the gateway adds to each request (bench/gateway.py). aiohttp's, a
general client (sessions, cookies, redirects, proxies, a task per request body, a
timer handle per read), cost about 220-370 µs of CPU a call to an instant upstream
on this class of machine; this one, which does only what a generation call needs,
about 80 µs. It speaks HTTP/1.1 to the configured base URL (http or https), keeps
connections alive in a pool per event loop, and hands the response body over as it
arrives.

What a generation call needs, and what it does not:
- a reused connection that the upstream closed just as the request went out (the
  request never reached it) is tried once more on a new connection; nothing else is
  retried, a generation not being idempotent;
- the body is read as it comes, with back-pressure: reading stops while more than
  `_HIGH_WATER` bytes wait unread;
- `connect_timeout` bounds connecting, `read_timeout` every wait for the response's
  head or its next bytes; a whole generation has no deadline;
- no redirects, cookies, proxies or compression (`accept-encoding: identity`): an
  inference API uses none of them.

Its failures are the `TransportError` subclasses below, which
engines/upstream_errors.py turns into the client's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

# Bytes of a response body waiting unread before the connection stops reading.
_HIGH_WATER = 256 * 1024
# Seconds a response released at its logical end may take to end on the wire (the
# last chunk of a chunked body, sent apart) before its connection is closed.
END_GRACE = 1.0
# Seconds a kept-alive connection may idle before it is closed: under the 5 s after
# which uvicorn (vLLM, SGLang) and llama-server close theirs, so a connection is not
# reused just as the server closes it.
IDLE = 4.0


class TransportError(Exception):
    """The upstream could not be reached, or its answer could not be read."""


class ConnectFailed(TransportError):
    """Nothing answered: the connection was refused, or not made in time."""


class ReadTimeout(TransportError):
    """The upstream went silent for longer than the read timeout."""


class ConnectionBroken(TransportError):
    """The connection closed or broke before the response was whole, or the upstream
    sent something that is not HTTP/1.1."""


class _Reused(ConnectionBroken):
    """A reused connection closed before any byte of its answer: the request can be
    sent again on a new one."""


class Response:
    """An upstream response: its status and headers (names in lower case), then its
    body, read with `readany()` or `read()`. `close()` ends it: a connection whose
    response was read to its end goes back to the pool, any other is closed (an
    upstream sees its client go away, and stops generating)."""

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers: Mapping[str, str] = headers
        self._connection: _Connection | None = connection

    async def readany(self) -> bytes:
        """What has arrived of the body since the last read, waiting for some if
        nothing has; b"" at its end."""
        connection = self._connection
        if connection is None:
            return b""
        piece = await connection.body_piece()
        if not piece:
            self.close()
        return piece

    async def read(self) -> bytes:
        pieces = []
        while piece := await self.readany():
            pieces.append(piece)
        return b"".join(pieces)

    def close(self, *, ended: bool = False) -> None:
        """`ended`: the caller has read all the body holds for it (a stream's end
        marker), and only its framing can be left, which arrives apart at times (a
        chunked body's last chunk): the connection waits `END_GRACE` for it and goes
        back to the pool, where it would otherwise be closed."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release(ended=ended)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self.loop = pool.loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._reused = False
        self.idle_since = 0.0
        # The current response.
        self._headers: dict[str, str] = {}
        self._response: Response | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        # Set while a released response is read to its end (`release(ended=True)`).
        self._ending: asyncio.TimerHandle | None = None
        self._got_bytes = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._keep_alive = False
        self._framed = False  # a length or chunked framing: EOF before the end is an error
        self._error: TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._timeout = pool.read_timeout

    # -- the request --------------------------------------------------------------------

    def send(self, request: bytes) -> None:
        """Write `request`; its head is awaited with `head()`. The read timeout runs
        from here, whether or not anything waits for the head."""
        self._headers = {}
        self._response = None
        self._got_bytes = False
        self._body.clear()
        self._buffered = 0
        self._complete = False
        self._keep_alive = False
        self._framed = False
        self._error = None
        if self._closed or self._transport is None:
            self._error = ConnectionBroken("the upstream closed the connection")
            return
        self._head_timer = self.loop.call_later(self._timeout, self._head_timed_out)
        self._transport.write(request)

    async def head(self, wait: float | None) -> Response | None:
        """The response once its head has arrived; None if `wait` seconds pass first
        (the request goes on, and its head can be waited for again)."""
        if self._response is None and self._error is None:
            waiter = self._waiter = self.loop.create_future()
            timer = None if wait is None else self.loop.call_later(wait, _stop_waiting, waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._waiter = None
        if self._error is not None:
            raise self._error
        return self._response

    def _stop_timers(self) -> None:
        for timer in (self._head_timer, self._ending):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._ending = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._response is None:
            self._fail(ReadTimeout("no answer from the upstream in time"))
            self.close()

    def reuse(self) -> None:
        self._reused = True

    def release(self, *, ended: bool = False) -> None:
        """The response is done with: the connection goes back to the pool if its
        response ended and the upstream keeps it open, or closes. With `ended`, a
        response still arriving is read to its end first (what is left of it is
        dropped), for up to `END_GRACE`."""
        if self._complete and self._keep_alive and not self._closed:
            self._resume()
            self.idle_since = time.monotonic()
            self._pool.put(self)
        elif ended and not self._complete and not self._closed and self._error is None:
            self._body.clear()
            self._buffered = 0
            self._resume()
            self._ending = self.loop.call_later(END_GRACE, self.close)
        else:
            self.close()

    def close(self) -> None:
        self._stop_timers()
        if not self._closed:
            self._closed = True
            if self._transport is not None:
                self._transport.abort()

    # -- reading the body ---------------------------------------------------------------

    async def body_piece(self) -> bytes:
        while not self._body:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self.loop.create_future()
            timer = self.loop.call_later(self._timeout, self._read_timed_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        piece = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        self._resume()
        return piece

    def _read_timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout("no data from the upstream in time"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        if self._paused and self._transport is not None and not self._closed:
            self._paused = False
            self._transport.resume_reading()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"an answer that is not HTTP/1.1: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._stop_timers()
        self._pool.forget(self)
        if self._complete:
            return
        if self._response is None and not self._got_bytes and self._reused:
            self._fail(_Reused("the kept-alive connection was closed"))
        elif self._response is not None and not self._framed:
            # A body delimited by the connection's end (no length, not chunked).
            self._complete = True
            self._wake()
        else:
            reason = f": {exc}" if exc else ""
            self._fail(ConnectionBroken(f"the upstream closed the connection{reason}"))

    def _fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    # -- httptools' callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        headers = self._headers
        self._framed = "content-length" in headers or "chunked" in headers.get(
            "transfer-encoding", ""
        )
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._response = Response(self, self._parser.get_status_code(), headers)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._ending is not None:
            return  # nobody reads it any more
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        # Asked now: once the message is complete the parser starts over, and answers
        # for the next one.
        self._keep_alive = self._parser.should_keep_alive()
        if self._ending is not None:
            self._ending.cancel()
            self._ending = None
            self.release()
            return
        self._wake()


class _Pool:
    """The connections to one upstream on one event loop; idle ones, newest last."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
        idle: float,
    ) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self._host = host
        self._port = port
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._idle_limit = idle
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, connection = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"no connection to {self._host}:{self._port} in time") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        # uvloop may call connection_made only in a later loop turn.
        connection.connection_made(transport)
        self._open.add(connection)
        return connection

    def take(self) -> _Connection | None:
        """The most recently used idle connection, unless it idled past the limit
        (the upstream may be closing it just now)."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < self._idle_limit:
                connection.reuse()
                return connection
            connection.close()
        return None

    def put(self, connection: _Connection) -> None:
        # Newest last, so the oldest are first: those idle past the limit (a burst's
        # extra connections, which the top of the pool keeps from being taken) are
        # closed rather than left open until the upstream closes them.
        self._idle.append(connection)
        stale = connection.idle_since - self._idle_limit
        while self._idle[0].idle_since <= stale:
            self._idle.pop(0).close()

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._idle.clear()


class HTTPClient:
    """POSTs to one base URL, with a pool of connections per event loop that uses it
    (`parley serve --workers` and the tests each run loops of their own)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        idle: float = IDLE,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname  # IPv6
        authority = host if port == (443 if tls else 80) else f"{host}:{port}"
        fixed = {
            "host": authority,
            "accept-encoding": "identity",
            "user-agent": "parley",
            **{name.lower(): value for name, value in headers.items()},
        }
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._prefix = url.path.rstrip("/") + "/"
        self._new_pool = functools.partial(
            _Pool,
            host=url.hostname,
            port=port,
            tls=ssl.create_default_context() if tls else None,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            idle=idle,
        )
        self._pool: _Pool | None = None

    def _current(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            pool = self._pool = self._new_pool(loop)
        return pool

    async def send(self, path: str, body: bytes, content_type: str) -> Exchange:
        """Send the request (connecting first if no idle connection is at hand); its
        response is awaited with the exchange's `head()`."""
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\n{self._head}"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        pool = self._current()
        connection = pool.take() or await pool.connect()
        connection.send(request)
        return Exchange(pool, connection, request)

    async def post(self, path: str, body: bytes, content_type: str) -> Response:
        """Send the request and wait for the response's head (not its body)."""
        exchange = await self.send(path, body, content_type)
        return await exchange.response()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        # A pool of another loop (a test's, gone) cannot be closed from this one.
        if pool is not None and pool.loop is asyncio.get_running_loop():
            pool.close()


class Exchange:
    """A request sent, until its response's head is handed over. Waiting for the head
    is done in the caller's own task, and may stop and start again: the request goes
    on in between (only its connection's read timeout runs)."""

    def __init__(self, pool: _Pool, connection: _Connection, request: bytes) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._request = request

    async def head(self, wait: float | None) -> Response | None:
        """The response once its head has arrived; None if `wait` seconds pass first.
        A failure or a cancellation while waiting closes the connection."""
        connection = self._connection
        if connection is None:
            raise ConnectionBroken("the exchange is closed")
        try:
            try:
                response = await connection.head(wait)
            except _Reused:
                # The request never reached the upstream: once more, on a new one.
                connection = self._connection = await self._pool.connect()
                connection.send(self._request)
                response = await connection.head(wait)
        except BaseException:
            self.close()
            raise
        if response is not None:
            self._connection = None  # the response owns it now
        return response

    async def response(self) -> Response:
        """The response, however long its head takes (within the read timeout)."""
        response = await self.head(None)
        assert response is not None
        return response

    def close(self) -> None:
        """Drop the request if its head was not handed over."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _stop_waiting(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
