"""Writes of one event-loop turn leave as one send (server/connections.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from parley.server.connections import CoalescingTransport


class Recorded(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))
        self.events.append("write")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_turn_leave_together_in_order() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"5\r\nhello\r\n")
    transport.writelines([b"0\r\n", b"\r\n"])
    assert real.sent == []
    assert transport.get_write_buffer_size() == 34
    await asyncio.sleep(0)
    assert real.sent == [b"HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.sent[1:] == [b"next"]
    # A complete response is flushed at once, not at the end of the turn.
    transport.write(b"HTTP/1.1 204 No Content\r\n")
    transport.write(b"\r\n")
    transport.flush()
    assert real.sent[2:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    await asyncio.sleep(0)
    assert len(real.sent) == 3


async def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert real.events == ["write", "close"]
    assert real.sent == [b"last words"]

    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"never read")
    transport.abort()
    await asyncio.sleep(0)
    assert real.events == ["abort"]
    assert transport.is_closing()
