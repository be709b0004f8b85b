"""The neutral request and event types that flow between core and the engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
EngineStopReason = Literal["end_turn", "max_tokens"]


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """What an engine is asked to do: a conversation to continue, and limits.

    `turns` are already role-checked and merged; when the last turn is an
    assistant turn it is a prefill that the reply continues (api-spec §5.2).
    """

    model: str
    system: str | None
    turns: tuple[Turn, ...]
    max_tokens: int
    stop_sequences: tuple[str, ...] = ()
    sampling: Sampling = field(default_factory=Sampling)

    @property
    def prefill(self) -> str | None:
        if self.turns and self.turns[-1].role == "assistant":
            return self.turns[-1].text
        return None


@dataclass(frozen=True)
class TextChunk:
    """Text the model produced; `output_tokens` is the running total so far."""

    text: str
    output_tokens: int


@dataclass(frozen=True)
class Finished:
    reason: EngineStopReason
    output_tokens: int


EngineEvent = TextChunk | Finished


@dataclass
class Meter:
    """Token counts of one message as it runs; read after it ends or is cut off."""

    input_tokens: int = 0
    output_tokens: int = 0
