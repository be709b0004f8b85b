"""Request bodies: `POST /v1/messages` and `POST /v1/messages/count_tokens` (api-spec §5, §8)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from parley.protocol.content import CacheControl, ContentBlockParam, Strict, TextBlockParam

# A string is shorthand for one text block (api-spec §5.2).
MessageContent = str | list[ContentBlockParam]
SystemContent = str | list[TextBlockParam]


class MessageParam(Strict):
    # Role "system" is the newer mid-conversation system message (api-version §19.4).
    role: Literal["user", "assistant", "system"]
    content: MessageContent


class Metadata(Strict):
    user_id: str | None = None


class ToolInputSchema(Strict):
    """A JSON Schema for a tool's input; only its top level is typed here (it must
    describe an object). The rest of the schema is checked by core."""

    model_config = Strict.model_config | {"extra": "allow"}
    type: Literal["object"]
    properties: dict[str, Any] | None = None
    required: list[str] | None = None


class CustomTool(Strict):
    type: Literal["custom"] | None = None
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")]
    description: str | None = None
    input_schema: ToolInputSchema
    cache_control: CacheControl | None = None
    strict: bool | None = None


class ServerTool(Strict):
    """A built-in tool, discriminated by a versioned `type` (`bash_20250124`,
    `web_search_20250305`, ...). Parsed only so that core can refuse it by name."""

    model_config = Strict.model_config | {"extra": "allow"}
    type: str
    name: str | None = None


def _tool_tag(value: Any) -> str:
    # `type` is optional on custom tools, yet errors carry the `custom` tag in their
    # path (`tools.0.custom.name: ...`, api-spec §5.4).
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind in (None, "custom") else "server"


ToolParam = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[ServerTool, Tag("server")],
    Discriminator(_tool_tag),
]


class ToolChoiceAuto(Strict):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(Strict):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(Strict):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(Strict):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
    Field(discriminator="type"),
]


class ThinkingEnabled(Strict):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=1024)]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(Strict):
    type: Literal["disabled"]


class ThinkingAdaptive(Strict):
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingBetweenTools(Strict):
    """Thinking off; short progress notes between tool calls come back as thinking
    blocks (api-version §19.4)."""

    type: Literal["between_tools"]


ThinkingConfig = Annotated[
    ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive | ThinkingBetweenTools,
    Field(discriminator="type"),
]


class ThreadCreate(Strict):
    type: Literal["create"]


class ThreadContinue(Strict):
    type: Literal["continue"]
    previous_message_id: Annotated[str, Field(min_length=1)]


# Beta `message-threads-2026-08-12`: the server keeps the conversation under each
# reply's id, and a `continue` sends only the new messages (message-threads doc §1.1).
ThreadParam = Annotated[ThreadCreate | ThreadContinue, Field(discriminator="type")]


class JSONOutputFormat(Strict):
    """`output_config.format`: the reply's text is JSON valid against `schema`. The
    schema is checked against the subset the API supports by core."""

    model_config = Strict.model_config | {"populate_by_name": True, "serialize_by_alias": True}
    type: Literal["json_schema"]
    # `schema` would shadow a BaseModel attribute; the wire name is kept by the alias.
    json_schema: dict[str, Any] = Field(alias="schema")


Effort = Literal["low", "medium", "high", "xhigh", "max"]


class TaskBudget(Strict):
    model_config = Strict.model_config | {"extra": "allow"}
    type: str


class OutputConfig(Strict):
    effort: Effort | None = None
    format: JSONOutputFormat | None = None
    # Beta (`task-budgets-2026-03-13`); refused by core, parsed so it can be named.
    task_budget: TaskBudget | None = None


# --- context management (beta `context-management-2025-06-27`) ------------------------


class InputTokensValue(Strict):
    type: Literal["input_tokens"]
    value: Annotated[int, Field(ge=0)]


class ToolUsesValue(Strict):
    type: Literal["tool_uses"]
    value: Annotated[int, Field(ge=0)]


class ThinkingTurnsValue(Strict):
    type: Literal["thinking_turns"]
    value: Annotated[int, Field(ge=0)]


class AllThinkingTurns(Strict):
    type: Literal["all"]


class ClearToolUsesEdit(Strict):
    type: Literal["clear_tool_uses_20250919"]
    trigger: Annotated[InputTokensValue | ToolUsesValue, Field(discriminator="type")] | None = None
    keep: ToolUsesValue | None = None
    clear_at_least: InputTokensValue | None = None
    exclude_tools: list[str] | None = None
    clear_tool_inputs: bool | list[str] | None = None


class ClearThinkingEdit(Strict):
    type: Literal["clear_thinking_20251015"]
    keep: (
        Annotated[ThinkingTurnsValue | AllThinkingTurns, Field(discriminator="type")]
        | Literal["all"]
        | None
    ) = None


class CompactEdit(Strict):
    """Parsed so that core can refuse it by name."""

    model_config = Strict.model_config | {"extra": "allow"}
    type: Literal["compact_20260112"]


ContextEdit = Annotated[
    ClearToolUsesEdit | ClearThinkingEdit | CompactEdit, Field(discriminator="type")
]


class ContextManagement(Strict):
    edits: list[ContextEdit] | None = None


class Diagnostics(Strict):
    previous_message_id: str | None = None


class BillingPolicy(Strict):
    type: Literal["billing_policy"]
    bill_to: Literal["self", "user_profile"]


class _PromptParams(Strict):
    model: Annotated[str, Field(min_length=1)]
    messages: list[MessageParam]
    system: SystemContent | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    # Each field below is honoured or refused by core (core/request_fields.py); the
    # table in docs/fidelity.md says which and why.
    cache_control: CacheControl | None = None
    output_config: OutputConfig | None = None
    speed: Literal["standard", "fast"] | None = None
    # Beta fields: refused as extra inputs unless their `anthropic-beta` value is sent.
    context_management: ContextManagement | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    compaction: dict[str, Any] | None = None
    billing_policy: BillingPolicy | None = None


class MessageCreateParams(_PromptParams):
    max_tokens: Annotated[int, Field(ge=0)]
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    container: str | dict[str, Any] | None = None
    inference_geo: str | None = None
    thread: ThreadParam | None = None
    diagnostics: Diagnostics | None = None
    # Beta: the deprecated spelling of `output_config.format`.
    output_format: JSONOutputFormat | None = None
    fallbacks: Literal["default"] | list[dict[str, Any]] | None = None
    fallback_credit_token: str | dict[str, Any] | None = None


class CountTokensParams(_PromptParams):
    pass


# api-version-2026-10-21 §19.4: these are refused under the new version.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
