"""A fixed set of engine slots with a bounded wait queue.

A request first checks `admit()` (a full queue is a 529 before any byte is
sent), then waits for a slot. Slots are released by whoever finishes the
work, which for a thread-backed engine is the worker thread itself, so a
client that goes away never leaves a slot stuck.

Batch work runs inside `background()`: it waits in a queue of its own that
is served only when no interactive request waits, it never holds every slot
of a pool that has more than one, and it is never refused as overloaded (the
batch worker bounds its own concurrency instead).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

from parley.errors import OverloadedError

T = TypeVar("T")

# A property of the task doing the work, not of the request: engines acquire slots
# without knowing who asks, so the batch worker marks its own tasks.
_BACKGROUND: ContextVar[bool] = ContextVar("parley_background_work", default=False)


@contextmanager
def background() -> Iterator[None]:
    """Mark slot requests made inside (by this task) as low-priority batch work."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


@dataclass(frozen=True)
class Occupancy:
    """A pool's slots and queue at one moment, for metrics (batch work counted apart)."""

    slots: int
    busy: int
    waiting: int
    busy_background: int
    waiting_background: int


class SlotPool(Generic[T]):
    def __init__(self, slots: list[T], max_waiting: int) -> None:
        self._free: deque[T] = deque(slots)
        self._waiters: deque[asyncio.Future[T]] = deque()
        self._background_waiters: deque[asyncio.Future[T]] = deque()
        self._background_held: set[int] = set()
        self._max_waiting = max_waiting
        self.size = len(slots)
        # One slot stays for interactive requests whenever there is more than one.
        self.max_background = max(1, self.size - 1)

    @property
    def waiting(self) -> int:
        """Interactive requests waiting for a slot."""
        return len(self._waiters)

    @property
    def waiting_background(self) -> int:
        return len(self._background_waiters)

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    @property
    def busy_background(self) -> int:
        return len(self._background_held)

    def occupancy(self) -> Occupancy:
        return Occupancy(
            self.size, self.busy, self.waiting, self.busy_background, self.waiting_background
        )

    def admit(self) -> None:
        if _BACKGROUND.get():
            return
        if not self._free and len(self._waiters) >= self._max_waiting:
            raise OverloadedError("Overloaded")

    async def acquire(self) -> T:
        # No admit() here: the request was admitted before its response started, and a
        # stream that already sent its 200 must not fail with overloaded (api-spec §6.4).
        # Requests admitted together may briefly take the queue past `max_waiting`.
        is_background = _BACKGROUND.get()
        if is_background:
            if self._free and not self._waiters and self._background_may_take():
                return self._take_background(self._free.popleft())
            queue = self._background_waiters
        else:
            if self._free and not self._waiters:
                return self._free.popleft()
            queue = self._waiters
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed a slot just as we were cancelled
            elif waiter in queue:  # release() may have dropped it already
                queue.remove(waiter)
            raise

    def release(self, slot: T) -> None:
        self._background_held.discard(id(slot))
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        while self._background_waiters and self._background_may_take():
            waiter = self._background_waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take_background(slot))
                return
        self._free.append(slot)

    def _background_may_take(self) -> bool:
        return len(self._background_held) < self.max_background

    def _take_background(self, slot: T) -> T:
        self._background_held.add(id(slot))
        return slot
