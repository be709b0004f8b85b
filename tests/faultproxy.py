"""A TCP proxy the tests control, in front of the real PostgreSQL or Redis, to make a
dependency fail the ways networks do, without touching the machine's services.

Modes (`proxy.mode = ...`), applied to new and existing connections alike:
- "pass": bytes flow both ways;
- "refuse": the port is closed, so connecting is refused; open connections are reset;
- "reset": connections are accepted and reset at once; open ones are reset;
- "blackhole": connections are accepted and nothing ever comes back; open ones stall.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Mode = Literal["pass", "refuse", "reset", "blackhole"]


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.port = 0
        self.accepted = 0
        self._flowing = asyncio.Event()

    # -- control (from the test's thread) -------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._call(self._switch(mode))

    def url(self, real_url: str) -> str:
        """`real_url` (postgresql://..., redis://...) pointed at this proxy."""
        parts = urlsplit(real_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = (auth + "@" if auth else "") + f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _call(self, work: object) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)  # type: ignore[arg-type]

    # -- inside the proxy's loop ----------------------------------------------------

    async def _listen(self) -> None:
        if self._mode != "blackhole":
            self._flowing.set()
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        for client, upstream in list(self._links):
            _reset(client)
            _reset(upstream)
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _switch(self, mode: Mode) -> None:
        previous, self._mode = self._mode, mode
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode in ("refuse", "reset"):
            for client, upstream in list(self._links):
                _reset(client)
                _reset(upstream)
            self._links.clear()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if previous == "refuse" and mode != "refuse":
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode == "reset":
            _reset(writer)
            return
        if self._mode == "blackhole":
            await self._swallow(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._links.discard(link)
            for w in link:
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()  # held, never delivered while black-holed
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@contextmanager
def fault_proxy(real_url: str) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of the server of `real_url`, and the URL that goes through it."""
    parts = urlsplit(real_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 0).start()
    try:
        yield proxy, proxy.url(real_url)
    finally:
        proxy.close()
