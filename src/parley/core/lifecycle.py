"""Where a serving process is in its life: serving, draining, or past its drain deadline.

A drain (SIGTERM) lets work in flight finish while new requests are turned away with
a retryable 529; at the deadline, work still running is cut, each piece in the way its
client can understand (a stream ends with an `error` event, a plain request gets the
529), and settled as usual. Readiness probes read `draining`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Signal:
    """Something that happens once (the drain deadline, a client leaving), told to
    callbacks: a callback, not a task waiting on an event, since every request in
    flight holds one, and a task per request costs the hot path."""

    def __init__(self) -> None:
        self.fired = False
        self._callbacks: dict[Callable[[], None], None] = {}

    def on(self, callback: Callable[[], None]) -> Callable[[], object]:
        """Call `callback` when it happens (at once if it has); returns what takes it
        back."""
        if self.fired:
            callback()
            return _nothing
        self._callbacks[callback] = None
        return lambda: self._callbacks.pop(callback, None)

    def fire(self) -> None:
        if not self.fired:
            self.fired = True
            callbacks, self._callbacks = self._callbacks, {}
            for callback in callbacks:
                callback()


class Lifecycle:
    def __init__(self) -> None:
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # From the drain deadline on: whatever still runs ends now.
        self._cut = Signal()

    @property
    def draining(self) -> bool:
        """True from the start of a drain on: not ready for new work."""
        return self._draining

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start_draining(self) -> None:
        self._draining = True

    def cut_now(self) -> None:
        self._draining = True
        self._cut.fire()

    def on_cut(self, callback: Callable[[], None]) -> Callable[[], object]:
        """Call `callback` at the drain deadline (at once if it has passed); returns
        what takes it back."""
        return self._cut.on(callback)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one request (its whole response, a stream's included) as in flight."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


def _nothing() -> None:
    pass
