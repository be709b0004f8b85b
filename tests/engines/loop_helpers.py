"""Driving a BatchLoop from tests: prompts in ChatML, jobs run to their end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from parley.engines.llamacpp.jobs import (
    Admitted,
    Done,
    EventQueue,
    Failed,
    Job,
    LoopEvent,
    SamplingParams,
    TokenOut,
)
from parley.engines.llamacpp.loop import BatchLoop
from parley.engines.llamacpp.sequence import JobHandle

GREEDY = SamplingParams(temperature=0.0)


def chatml(*turns: tuple[str, str], open_reply: bool = True) -> str:
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return text + ("<|im_start|>assistant\n" if open_reply else "")


def tokens_of(loop: BatchLoop, text: str) -> list[int]:
    assert loop.model is not None
    return loop.model.tokenize(text, add_bos=loop.model.add_bos, special=True)


@dataclass
class Outcome:
    admitted: Admitted | None = None
    tokens: list[int] = field(default_factory=list)
    logits: list[npt.NDArray[np.float32]] = field(default_factory=list)
    text: bytes = b""
    end: Done | Failed | None = None

    def add(self, event: LoopEvent) -> None:
        if isinstance(event, Admitted):
            self.admitted = event
        elif isinstance(event, TokenOut):
            self.tokens.append(event.token)
            self.text += event.piece
            if event.logits is not None:
                self.logits.append(event.logits)
        else:
            self.end = event


class Running:
    """A submitted job whose events are collected as they come."""

    def __init__(self, loop: BatchLoop, tokens: list[int], **job: Any) -> None:
        self.queue = EventQueue()
        self.outcome = Outcome()
        job.setdefault("max_tokens", 24)
        job.setdefault("sampling", GREEDY)
        self.handle: JobHandle = loop.submit(Job(tokens, on_events=self.queue.push, **job))

    async def next(self) -> LoopEvent:
        event = await self.queue.get()
        self.outcome.add(event)
        return event

    async def finish(self) -> Outcome:
        while self.outcome.end is None:
            await self.next()
        return self.outcome


async def run(loop: BatchLoop, tokens: list[int], **job: Any) -> Outcome:
    return await Running(loop, tokens, **job).finish()
