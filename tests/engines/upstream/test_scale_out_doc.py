"""The example config in docs/scale-out.md is a working config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley.config import AnthropicBackendConfig, OpenAIBackendConfig, load_settings
from parley.engines.registry import ModelRegistry
from parley.engines.routing import RoutedEngine

DOC = Path(__file__).resolve().parents[3] / "docs" / "scale-out.md"


def example_config() -> str:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    return blocks[0]


async def test_the_example_config_loads_and_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "parley.toml"
    path.write_text(example_config())
    monkeypatch.setenv("ANTHROPIC_UPSTREAM_KEY", "sk-ant-example")
    settings = load_settings(path, data_dir=tmp_path / "data")
    llama, claude = settings.models
    assert [b.name for b in llama.backends] == ["vllm-a", "vllm-b", "vllm-c"]
    assert all(isinstance(b, OpenAIBackendConfig) for b in llama.backends)
    assert isinstance(claude.backends[0], AnthropicBackendConfig)
    assert claude.backends[0].secret() == "sk-ant-example"
    assert set(settings.tiers) == {"default", "team"}

    registry = ModelRegistry.from_settings(settings)
    try:
        entry = registry.resolve("llama")
        assert isinstance(entry.engine, RoutedEngine)
        assert len(entry.engine.backends) == 3
        info = entry.info()
        assert (info.max_input_tokens, info.max_tokens) == (32768, 8192)
        assert info.capabilities.image_input.supported is False
        assert registry.resolve("sonnet").info().capabilities.image_input.supported is True
    finally:
        await registry.aclose()
