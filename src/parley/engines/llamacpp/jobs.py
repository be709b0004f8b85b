"""What the embedded batch loop is asked to do, and what it answers.

These types carry no llama.cpp objects, so the engine and its tests can build
jobs and read events without importing the bindings. One `Job` is one
sequence in the loop: prompt token ids in, sampled tokens out. Events reach
the job's `on_events` on the asyncio loop that submitted it, a whole decode
step's worth at a time::

    Admitted  TokenOut*  ( Done | Failed )

`Done` or `Failed` comes last and only after the job's sequence has been
cleared, so whoever hands out sequences (the engine's slot pool) may reuse it
as soon as that event arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from parley.engines.llamacpp.cache import Breakpoint, CacheLease

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(eq=False)
class Job:
    """One generation. `tokens` is the whole rendered prompt.

    `cache_scope` names whose cache entries the job may read and write (the API
    key's id; None: no caching at all). `lease` is what `BatchLoop.lookup`
    promised for these tokens; its entries stay pinned until the job is
    admitted. `keep` also stores the finished sequence (prompt and reply) as an
    unmarked entry, so the conversation's next turn can skip re-reading it.
    `stop` ends the job (`Done("stop")`) once the reply's bytes contain it (the
    engine's end of a thinking section); `logits` copies each step's logits into its
    `TokenOut` (tests only);
    `ignore_eog` runs on past end-of-generation tokens to `max_tokens`
    (benchmarks, like llama-server's ignore_eos).
    """

    tokens: Sequence[int]
    max_tokens: int
    on_events: Callable[[list[LoopEvent]], None]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    grammar: str | None = None
    cache_scope: str | None = None
    breakpoints: tuple[Breakpoint, ...] = ()
    lease: CacheLease | None = None
    reuse: bool = True
    keep: bool = True
    logits: bool = False
    ignore_eog: bool = False
    stop: bytes | None = None


@dataclass(frozen=True)
class Admitted:
    """The job got sequence `seq_id`; `restored` prompt tokens came from the cache
    (marked or not), so only the rest is evaluated."""

    seq_id: int
    restored: int


@dataclass(frozen=True)
class TokenOut:
    """One sampled token; an end-of-generation token comes too (its piece is empty),
    just before `Done("eog")`."""

    token: int
    piece: bytes
    logits: npt.NDArray[np.float32] | None = None


DoneReason = Literal["eog", "stop", "max_tokens", "context", "cancelled"]


@dataclass(frozen=True)
class Done:
    """The end. `generated` counts every sampled token, the end-of-generation one
    included ("eog"); "context" means the sequence ran out of its context."""

    reason: DoneReason
    generated: int


@dataclass(frozen=True)
class Failed:
    """The job could not run (bad grammar, prompt too long, a failed decode)."""

    message: str
    generated: int = 0


LoopEvent = Admitted | TokenOut | Done | Failed


class EventQueue:
    """An `on_events` target that turns a job's events into an async iterator
    ending after `Done` or `Failed`."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[LoopEvent] = asyncio.Queue()

    def push(self, events: list[LoopEvent]) -> None:
        for event in events:
            self._queue.put_nowait(event)

    async def get(self) -> LoopEvent:
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[LoopEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, Done | Failed):
                return


__all__ = [
    "Admitted",
    "Breakpoint",
    "Done",
    "DoneReason",
    "EventQueue",
    "Failed",
    "Job",
    "LoopEvent",
    "SamplingParams",
    "TokenOut",
]
