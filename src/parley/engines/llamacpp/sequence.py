"""The batch loop's view of a job: its handle, its sequence once admitted, and
the outbox that carries its events to the asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import numpy as np

from parley.engines.llamacpp.cache import Tokens
from parley.engines.llamacpp.jobs import Breakpoint, Done, Failed, Job, LoopEvent
from parley.engines.llamacpp.sampling import SequenceSampler

log = logging.getLogger(__name__)


class JobHandle:
    """What `submit` returns. `cancel()` may be called from any thread; the loop
    retires the sequence at its next step and then sends `Done("cancelled")`."""

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self.job = job
        self.loop = loop
        self.seq_id: int | None = None
        self._wake = wake
        self._cancelled = threading.Event()
        self.finished = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        if not self.finished.is_set():
            self._cancelled.set()
            self._wake()


class ActiveSequence:
    """Mutated only by the engine thread."""

    def __init__(
        self,
        handle: JobHandle,
        seq: int,
        tokens: Tokens,
        sampler: SequenceSampler,
        restored: int,
        order: int,
    ) -> None:
        self.handle = handle
        self.job = handle.job
        self.seq = seq
        self.tokens = tokens
        self.sampler = sampler
        self.restored = restored
        self.order = order
        self.n_past = restored  # tokens in this sequence's KV cells
        self.reply: list[int] = []
        self.generated = 0
        # The reply's last bytes, kept only for a job with a `stop`.
        self.tail = b""
        # Set while a step runs: tokens this sequence put in the batch, and the
        # batch index of the one whose logits it samples (-1: none).
        self.chunk = 0
        self.index = -1
        marks: dict[int, Breakpoint] = {}
        for bp in sorted(self.job.breakpoints, key=lambda b: (b.position, b.ttl == "1h")):
            if restored < bp.position <= len(tokens):
                marks[bp.position] = bp
        self.pending_marks = sorted(marks.values(), key=lambda b: b.position)

    @property
    def prompting(self) -> bool:
        return self.n_past < len(self.tokens)

    def next_chunk(self, budget: int) -> int:
        """How many prompt tokens to evaluate now: cut at the budget and at the next
        breakpoint, so that a snapshot can be taken exactly there."""
        n = min(len(self.tokens) - self.n_past, budget)
        if self.pending_marks:
            n = min(n, self.pending_marks[0].position - self.n_past)
        return n

    def reached_mark(self) -> Breakpoint | None:
        if self.pending_marks and self.pending_marks[0].position == self.n_past:
            return self.pending_marks.pop(0)
        return None

    def stopped(self, piece: bytes) -> bool:
        """Whether the reply now holds the job's `stop` bytes."""
        stop = self.job.stop
        if stop is None:
            return False
        self.tail = (self.tail + piece)[-(len(stop) + len(piece)) :]
        return stop in self.tail

    def kv_tokens(self) -> Tokens:
        """The tokens whose KV this sequence holds: the prompt and the reply
        tokens decoded so far (the last sampled one never is)."""
        decoded = self.n_past - len(self.tokens)
        if decoded <= 0:
            return self.tokens[: self.n_past]
        return np.concatenate([self.tokens, np.asarray(self.reply[:decoded], dtype=np.int32)])


class Outbox:
    """A step's events, handed to each asyncio loop in one `call_soon_threadsafe`."""

    def __init__(self) -> None:
        self._events: dict[JobHandle, list[LoopEvent]] = {}

    def emit(self, handle: JobHandle, event: LoopEvent) -> None:
        self._events.setdefault(handle, []).append(event)

    def finish(self, handle: JobHandle, event: Done | Failed) -> None:
        self.emit(handle, event)
        handle.finished.set()

    def flush(self) -> None:
        if not self._events:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[JobHandle, list[LoopEvent]]]] = {}
        for handle, events in self._events.items():
            by_loop.setdefault(handle.loop, []).append((handle, events))
        self._events = {}
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is listening any more
                for handle, _ in items:
                    handle.cancel()


def _deliver(items: list[tuple[JobHandle, list[LoopEvent]]]) -> None:
    for handle, events in items:
        try:
            handle.job.on_events(events)
        except Exception:
            log.exception("a job's event callback failed")
