"""A fixed set of engine slots with a bounded wait queue (issue: concurrency).

A request first checks `admit()` (a full queue is a 529 before any byte is
sent), then waits for a slot. Slots are released by whoever finishes the
work, which for a thread-backed engine is the worker thread itself, so a
client that goes away never leaves a slot stuck.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from parley.errors import OverloadedError

T = TypeVar("T")


class SlotPool(Generic[T]):
    def __init__(self, slots: list[T], max_waiting: int) -> None:
        self._free: deque[T] = deque(slots)
        self._waiters: deque[asyncio.Future[T]] = deque()
        self._max_waiting = max_waiting
        self.size = len(slots)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    def admit(self) -> None:
        if not self._free and len(self._waiters) >= self._max_waiting:
            raise OverloadedError("Overloaded")

    async def acquire(self) -> T:
        # No admit() here: the request was admitted before its response started, and a
        # stream that already sent its 200 must not fail with overloaded (api-spec §6.4).
        # Requests admitted together may briefly take the queue past `max_waiting`.
        if self._free and not self._waiters:
            return self._free.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed a slot just as we were cancelled
            elif waiter in self._waiters:  # release() may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self, slot: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)
