"""The Engine contract.

An engine turns a neutral `GenerationRequest` into a stream of neutral events
(text chunks and tool calls, then `Finished`; the order and fields are described
in `parley.core.generation`). It owns its model's chat template and tokenizer,
and declares what it can read in `capabilities` (images, tools); core refuses
the rest before the engine is called. Errors are raised as `parley.errors.APIError`
subclasses; before the first event they become HTTP errors, after it an SSE
`error` event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from parley.core.generation import EngineCapabilities, EngineEvent, GenerationRequest

__all__ = ["Engine", "EngineCapabilities", "PreparedGeneration"]


@dataclass(frozen=True)
class PreparedGeneration:
    """A request the engine has tokenized and admitted to its queue."""

    request: GenerationRequest
    input_tokens: int
    prompt: object  # engine-private form of the prompt (e.g. token ids)


class Engine(ABC):
    # Text only unless an engine says otherwise (a class or instance attribute).
    capabilities: EngineCapabilities = EngineCapabilities()

    @property
    @abstractmethod
    def context_window(self) -> int: ...

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Load weights or open connections; called once before serving."""

    @abstractmethod
    async def count_tokens(self, request: GenerationRequest) -> int:
        """Input tokens of the prompt the model would be given for this request,
        rendered exactly as `prepare` renders it (tools and tool blocks included)."""

    @abstractmethod
    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        """Tokenize and admit: raises OverloadedError when the wait queue is full."""

    @abstractmethod
    def generate(self, prepared: PreparedGeneration) -> AsyncGenerator[EngineEvent, None]:
        """Run the model. Closing the iterator early stops generation promptly."""

    async def check_health(self) -> None:  # noqa: B027 (optional hook)
        """Raise if the engine cannot serve now (an upstream engine asks its server);
        the router uses it to bring an ejected backend back."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release resources."""
