"""Model names and aliases -> engines, and the model table `/v1/models` serves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parley.config import LOCAL_FIELDS, LocalBackendConfig, ModelConfig, Settings
from parley.core.model_capabilities import model_capabilities
from parley.engines.base import Engine
from parley.errors import NotFoundError
from parley.protocol.models import ModelInfo


@dataclass
class ModelEntry:
    config: ModelConfig
    engine: Engine[Any]

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def max_output_tokens(self) -> int:
        return min(self.config.max_output_tokens, self.engine.context_window)

    def info(self) -> ModelInfo:
        return ModelInfo(
            id=self.config.id,
            display_name=self.config.display_name or self.config.id,
            created_at=self.config.created_at,
            max_input_tokens=self.engine.context_window,
            max_tokens=self.max_output_tokens,
            capabilities=model_capabilities(self.engine.capabilities),
        )


def build_engine(config: ModelConfig, settings: Settings) -> Engine[Any]:
    if config.backends:
        from parley.engines.backends import routed_engine

        return routed_engine(config, settings)
    from parley.engines.backends import declared_capabilities, local_engine

    engine = local_engine(
        LocalBackendConfig(**config.model_dump(include=set(LOCAL_FIELDS))),
        context_window=config.context_window,
        queue_size=settings.queue_size,
        thinking=config.thinking,
    )
    declared = (config.images, config.tools, config.structured_outputs, config.thinking)
    if any(value is not None for value in declared):
        engine.capabilities = declared_capabilities(config, engine.capabilities)
    return engine


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

    @property
    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

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
