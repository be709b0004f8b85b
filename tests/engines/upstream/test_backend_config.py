"""The `backends` section of a model's config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from parley.config import ModelConfig, Settings, load_settings
from parley.engines.registry import ModelRegistry
from parley.engines.scripted import ScriptedEngine

OPENAI = {"engine": "openai", "base_url": "http://vllm:8000/v1", "model": "m"}


def test_engine_fields_belong_on_the_backends() -> None:
    with pytest.raises(ValidationError, match="set engine, slots on each backend"):
        ModelConfig.model_validate(
            {"id": "x", "engine": "scripted", "slots": 3, "backends": [OPENAI]}
        )


def test_unknown_backend_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ModelConfig.model_validate({"id": "x", "backends": [{**OPENAI, "stop": ["x"]}]})


def test_an_existing_single_engine_config_stays_valid() -> None:
    model = ModelConfig.model_validate({"id": "x", "engine": "scripted", "token_delay": 0.1})
    assert model.backends == []


def test_the_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ModelConfig.model_validate(
        {"id": "x", "backends": [{**OPENAI, "api_key": "sk-inline-secret"}]}
    )
    settings = Settings(models=[model])
    assert "sk-inline-secret" not in repr(settings)
    assert "sk-inline-secret" not in settings.model_dump_json()
    monkeypatch.setenv("VLLM_KEY", "sk-from-env")
    from_env = ModelConfig.model_validate(
        {"id": "y", "backends": [{**OPENAI, "api_key_env": "VLLM_KEY"}]}
    )
    assert from_env.backends[0].secret() == "sk-from-env"  # type: ignore[union-attr]


async def test_parley_engine_replaces_the_backends(tmp_path: Path) -> None:
    # PARLEY_ENGINE=scripted (tests, demos) runs every model on the scripted engine.
    model = ModelConfig.model_validate({"id": "x", "backends": [OPENAI]})
    settings = load_settings(None, data_dir=tmp_path, models=[model], engine="scripted")
    registry = ModelRegistry.from_settings(settings)
    try:
        assert isinstance(registry.resolve("x").engine, ScriptedEngine)
    finally:
        await registry.aclose()
