"""A model's `backends` from the config, built into one routed engine."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from parley.config import (
    AnthropicBackendConfig,
    BackendConfig,
    LocalBackendConfig,
    ModelConfig,
    OpenAIBackendConfig,
    Settings,
)
from parley.engines.base import Engine, EngineCapabilities
from parley.engines.routing import Backend, RoutedEngine


def local_engine(
    backend: LocalBackendConfig,
    *,
    context_window: int | None,
    queue_size: int,
    thinking: bool | None = None,
) -> Engine[Any]:
    if backend.engine == "scripted":
        from parley.engines.scripted import ScriptedEngine

        return ScriptedEngine(
            context_window=context_window or 8192,
            slots=backend.slots or 2,
            max_waiting=queue_size,
            token_delay=backend.token_delay,
        )
    # Imported lazily: only a configured llamacpp model needs llama-cpp-python.
    from parley.engines.llamacpp import LlamaCppEngine

    return LlamaCppEngine(
        backend.path,
        context_window=context_window,
        slots=backend.slots or 4,
        threads=backend.threads,
        max_waiting=queue_size,
        thinking=thinking,
        context_per_sequence=backend.context_per_sequence,
        step_tokens=backend.step_tokens,
        cache_bytes=backend.cache_bytes,
        cache_min_tokens=backend.cache_min_tokens,
    )


def declared_capabilities(config: ModelConfig, default: EngineCapabilities) -> EngineCapabilities:
    def pick(declared: bool | None, own: bool) -> bool:
        return own if declared is None else declared

    # Citations are the engine's own to give: no setting can make a model cite.
    return replace(
        default,
        images=pick(config.images, default.images),
        tools=pick(config.tools, default.tools),
        structured_outputs=pick(config.structured_outputs, default.structured_outputs),
        thinking=pick(config.thinking, default.thinking),
    )


def _backend(
    backend: BackendConfig,
    model: ModelConfig,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
) -> Backend:
    engine: Engine[Any]
    if isinstance(backend, OpenAIBackendConfig):
        from parley.engines.openai_compat import OpenAICompatEngine

        engine = OpenAICompatEngine(
            backend, context_window=model.context_window, transport=transport
        )
        # What the model declares (thinking, say) shapes the upstream body itself.
        engine.capabilities = declared_capabilities(model, engine.capabilities)
        return Backend(engine.name, "openai", backend.base_url, engine, backend.model)
    if isinstance(backend, AnthropicBackendConfig):
        from parley.engines.anthropic_upstream import AnthropicUpstreamEngine

        engine = AnthropicUpstreamEngine(
            backend, context_window=model.context_window, transport=transport
        )
        return Backend(engine.name, "anthropic", backend.base_url, engine, backend.model)
    engine = local_engine(
        backend,
        context_window=model.context_window,
        queue_size=settings.queue_size,
        thinking=model.thinking,
    )
    target = str(backend.path or ("bundled GGUF" if backend.engine == "llamacpp" else "-"))
    return Backend(backend.name or f"{backend.engine}:{target}", backend.engine, target, engine)


def routed_engine(
    model: ModelConfig, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> RoutedEngine:
    backends = [_backend(b, model, settings, transport) for b in model.backends]
    names = [b.name for b in backends]
    for i, backend in enumerate(backends):
        if names.count(backend.name) > 1:  # the same URL twice: tell them apart in logs
            backend.name = f"{backend.name}#{i + 1}"
    routed = RoutedEngine(backends, model.routing, context_window=model.context_window)
    routed.capabilities = declared_capabilities(model, routed.capabilities)
    return routed
