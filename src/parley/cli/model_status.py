"""The data behind `parley models list`: each model, its backends and their health now.

Upstream backends are asked directly (their health check: `GET /models` for an
OpenAI-compatible server, `GET /v1/models` for an Anthropic one); local engines
are not started, only their model file is looked for. Keys never appear here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from parley.config import ModelConfig, Settings
from parley.engines.base import Engine
from parley.engines.registry import ModelRegistry
from parley.engines.routing import Backend, RoutedEngine

Health = Literal["healthy", "unhealthy", "unchecked"]


@dataclass
class BackendStatus:
    name: str
    kind: str
    target: str
    upstream_model: str | None
    health: Health
    problem: str | None = None


@dataclass
class ModelStatus:
    id: str
    aliases: list[str]
    display_name: str
    context_window: int | None
    max_output_tokens: int
    images: bool
    tools: bool
    backends: list[BackendStatus] = field(default_factory=list)


def _local_problem(kind: str, target: str) -> str | None:
    if kind != "llamacpp":
        return None
    if target == "bundled GGUF":
        from parley.engines.llamacpp import bundled_model_path

        try:
            path = bundled_model_path()
        except FileNotFoundError as exc:
            return str(exc)
    else:
        path = Path(target)
    return None if path.is_file() else f"model file not found: {path}"


async def _status(router: RoutedEngine | None, backend: Backend, check: bool) -> BackendStatus:
    status = BackendStatus(
        backend.name, backend.kind, backend.target, backend.upstream_model, "unchecked"
    )
    if not check:
        return status
    if backend.kind in ("llamacpp", "scripted"):
        problem = _local_problem(backend.kind, backend.target)
    else:
        assert router is not None
        problem = await router.probe(backend, within=5.0)
    status.health = "healthy" if problem is None else "unhealthy"
    status.problem = problem
    return status


def _single_backend(config: ModelConfig, engine: Engine[Any]) -> Backend:
    """A model without `backends`: its one local engine, shown as a backend."""
    target = str(config.path) if config.path else "bundled GGUF"
    if config.engine == "scripted":
        target = "-"
    return Backend(config.engine, config.engine, target, engine)


async def model_statuses(settings: Settings, *, check: bool = True) -> list[ModelStatus]:
    registry = ModelRegistry.from_settings(settings)
    try:
        models: list[ModelStatus] = []
        for entry in registry.entries:
            config, engine = entry.config, entry.engine
            router = engine if isinstance(engine, RoutedEngine) else None
            backends = router.backends if router else [_single_backend(config, engine)]
            statuses = await asyncio.gather(*(_status(router, b, check) for b in backends))
            models.append(
                ModelStatus(
                    id=config.id,
                    aliases=list(config.aliases),
                    display_name=config.display_name or config.id,
                    # Local engines read it from the GGUF when they start; None until then.
                    context_window=config.context_window or (engine.context_window or None),
                    max_output_tokens=config.max_output_tokens,
                    images=engine.capabilities.images,
                    tools=engine.capabilities.tools,
                    backends=list(statuses),
                )
            )
        return models
    finally:
        await registry.aclose()
