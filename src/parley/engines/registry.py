"""Model names and aliases -> engines, and the model table `/v1/models` serves."""

from __future__ import annotations

from dataclasses import dataclass

from parley.config import ModelConfig, Settings
from parley.engines.base import Engine
from parley.errors import NotFoundError
from parley.protocol.models import (
    ModelCapabilities,
    ModelInfo,
    Supported,
    ThinkingCapability,
    ThinkingTypes,
)


@dataclass
class ModelEntry:
    config: ModelConfig
    engine: Engine

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def max_output_tokens(self) -> int:
        return min(self.config.max_output_tokens, self.engine.context_window)

    def info(self) -> ModelInfo:
        caps = self.engine.capabilities
        no = Supported(supported=False)
        return ModelInfo(
            id=self.config.id,
            display_name=self.config.display_name or self.config.id,
            created_at=self.config.created_at,
            max_input_tokens=self.engine.context_window,
            max_tokens=self.max_output_tokens,
            capabilities=ModelCapabilities(
                batch=Supported(supported=True),
                citations=no,
                code_execution=no,
                image_input=Supported(supported=caps.images),
                pdf_input=no,
                structured_outputs=no,
                thinking=ThinkingCapability(
                    supported=False, types=ThinkingTypes(adaptive=no, enabled=no)
                ),
            ),
        )


def build_engine(config: ModelConfig, settings: Settings) -> Engine:
    if config.engine == "scripted":
        from parley.engines.scripted import ScriptedEngine

        return ScriptedEngine(
            context_window=config.context_window or 8192,
            slots=config.slots,
            max_waiting=settings.queue_size,
            token_delay=config.token_delay,
        )
    # Imported lazily: only a configured llamacpp model needs llama-cpp-python.
    from parley.engines.llamacpp import LlamaCppEngine

    return LlamaCppEngine(
        config.path,
        context_window=config.context_window,
        slots=config.slots,
        threads=config.threads,
        max_waiting=settings.queue_size,
    )


class ModelRegistry:
    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = entries
        self._by_name: dict[str, ModelEntry] = {}
        for entry in entries:
            for name in (entry.config.id, *entry.config.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name {name!r} is configured twice")
                self._by_name[name] = entry

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        return cls([ModelEntry(m, build_engine(m, settings)) for m in settings.effective_models()])

    def resolve(self, name: str) -> ModelEntry:
        entry = self._by_name.get(name)
        if entry is None:
            raise NotFoundError(f"model: {name}")
        return entry

    def listing(self) -> list[ModelInfo]:
        """Newest first (api-spec §9), ties broken by id for a stable order."""
        infos = [e.info() for e in self._entries]
        infos.sort(key=lambda m: m.id)
        infos.sort(key=lambda m: m.created_at, reverse=True)
        return infos

    async def start(self) -> None:
        for entry in self._entries:
            await entry.engine.start()

    async def aclose(self) -> None:
        for entry in self._entries:
            await entry.engine.aclose()
