"""What a response writes in one turn of the event loop leaves in one send, up to the
transport's high-water mark: past it, writes reach the real transport at once, so
that its flow control (pause_writing) holds a writer whose events are all ready."""

from __future__ import annotations

import asyncio
from typing import Any

from parley.server.connections import MAX_PENDING, CoalescingTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []

    def write(self, data: Any) -> None:
        self.sends.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def test_one_turns_writes_leave_in_one_send() -> None:
    real = Recording()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    for piece in (b"head", b"event one", b"event two"):
        transport.write(piece)
    assert real.sends == []
    await asyncio.sleep(0)
    assert real.sends == [b"headevent oneevent two"]


async def test_past_the_high_water_mark_writes_leave_at_once() -> None:
    real = Recording()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    piece = b"x" * 1000
    for _ in range(MAX_PENDING // len(piece) + 1):
        transport.write(piece)
    assert [len(s) for s in real.sends] == [len(piece) * (MAX_PENDING // len(piece) + 1)]
    assert transport.get_write_buffer_size() == 0
    transport.write(b"tail")
    await asyncio.sleep(0)
    assert real.sends[-1] == b"tail"
