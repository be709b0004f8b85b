"""`tools` and `tool_choice` beyond the schema (api-spec §5.4) -> neutral ToolSpecs."""

from __future__ import annotations

from parley.core.generation import CacheMark, EngineCapabilities, ToolChoice, ToolSpec
from parley.core.output_schemas import check_output_schema
from parley.core.tool_schemas import check_input_schema
from parley.errors import InvalidRequestError
from parley.protocol.content import CacheControl
from parley.protocol.requests import (
    CustomTool,
    ServerTool,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
)

ToolChoiceParam = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


def cache_mark(control: CacheControl | None) -> CacheMark | None:
    """A block's `cache_control` as the neutral mark (api-spec §16)."""
    return CacheMark(control.ttl) if control is not None else None


def tool_specs(
    tools: list[CustomTool | ServerTool] | None, capabilities: EngineCapabilities, model: str
) -> tuple[ToolSpec, ...]:
    if not tools:
        return ()
    if not capabilities.tools:
        raise InvalidRequestError(f"tools: model {model} does not support tool use.")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        if isinstance(tool, ServerTool):
            # Server tools (web search, code execution, ...) run on Anthropic's side;
            # there is nothing here to run them.
            raise InvalidRequestError(
                f"tools.{i}: tool type '{tool.type}' is not supported by model {model}"
            )
        schema = tool.input_schema.model_dump(exclude_unset=True)
        path = f"tools.{i}.custom.input_schema"
        check_input_schema(schema, path)
        if tool.strict:
            # Strict tool use: the input is guaranteed to validate, so the schema is
            # held to the structured-outputs subset (core/output_schemas.py).
            if not capabilities.structured_outputs:
                raise InvalidRequestError(
                    f"tools.{i}.custom.strict: model {model} does not support strict tool use."
                )
            check_output_schema(schema, path)
        specs.append(
            ToolSpec(
                tool.name,
                tool.description,
                schema,
                cache_mark(tool.cache_control),
                strict=bool(tool.strict),
            )
        )
    if len({s.name for s in specs}) != len(specs):
        raise InvalidRequestError("tools: Tool names must be unique.")
    return tuple(specs)


def tool_choice(choice: ToolChoiceParam | None, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if choice is None:
        return ToolChoice()
    if isinstance(choice, ToolChoiceNone):
        return ToolChoice("none")
    if not tools and isinstance(choice, ToolChoiceAny | ToolChoiceTool):
        # Wording unconfirmed; a call that cannot be made is refused rather than ignored.
        raise InvalidRequestError("tool_choice may only be specified while providing tools.")
    parallel = not choice.disable_parallel_tool_use
    if isinstance(choice, ToolChoiceTool):
        if not any(t.name == choice.name for t in tools):
            # Wording unconfirmed (seen quoted by clients of the real API).
            raise InvalidRequestError(
                f"tool_choice.tool.name: Tool '{choice.name}' not found in provided tools"
            )
        return ToolChoice("tool", choice.name, parallel)
    return ToolChoice("any" if isinstance(choice, ToolChoiceAny) else "auto", None, parallel)
