"""Forced tool calls on the real embedded model (SmolLM2 135M through llama.cpp), through
the newest Python SDK: inputs are generated under a grammar from the tool's schema,
so they validate whatever the model samples."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import jsonschema
import pytest

from tests.schemas import PROMPTS, SCHEMAS
from tests.serverproc import ParleyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.model]

MODEL = "smollm2-135m-instruct"
FIVE = ["get_weather", "create_event", "set_thermostat", "search_products", "move_robot"]


@pytest.fixture(scope="module")
def sdk(model_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=model_server.base_url, api_key=model_server.api_key, max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="module")
def sdk_2023(model_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    """The newest SDK pinned to 2023-06-01, which still takes `temperature`."""
    with anthropic.Anthropic(
        base_url=model_server.base_url,
        api_key=model_server.api_key,
        max_retries=0,
        default_headers={"anthropic-version": "2023-06-01"},
    ) as client:
        yield client


def tool(name: str) -> anthropic.types.ToolParam:
    return {"name": name, "description": f"{name.replace('_', ' ')}", "input_schema": SCHEMAS[name]}


@pytest.mark.parametrize("name", FIVE)
def test_forced_calls_validate_against_their_schema(sdk: anthropic.Anthropic, name: str) -> None:
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": PROMPTS[name]}],
        tools=[tool(name)],
        tool_choice={"type": "tool", "name": name},
    )
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert call.name == name
    assert call.id.startswith("toolu_")
    jsonschema.validate(call.input, SCHEMAS[name])


def test_any_choice_calls_one_of_several_tools(sdk: anthropic.Anthropic) -> None:
    names = ["get_weather", "send_email", "ping"]
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": PROMPTS["get_weather"]}],
        tools=[tool(n) for n in names],
        tool_choice={"type": "any"},
    )
    calls = [b for b in message.content if isinstance(b, anthropic.types.ToolUseBlock)]
    assert len(calls) == 1
    assert calls[0].name in names
    if message.stop_reason == "max_tokens":
        # Sampled at temperature 1, the small model can spend every token inside one
        # string: the call is returned cut off, as the API returns it, and only a
        # finished call is held to its schema.
        assert isinstance(calls[0].input, dict)
        return
    assert message.stop_reason == "tool_use"
    jsonschema.validate(calls[0].input, SCHEMAS[calls[0].name])


def test_streamed_input_equals_the_plain_one_at_temperature_0(
    sdk_2023: anthropic.Anthropic,
) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": PROMPTS["move_robot"]}],
        "tools": [tool("move_robot")],
        "tool_choice": {"type": "tool", "name": "move_robot"},
        # The 2.x SDK has no temperature argument; the body still carries it.
        "extra_body": {"temperature": 0},
    }
    plain = sdk_2023.messages.create(**request)  # type: ignore[call-overload]
    with sdk_2023.messages.stream(**request) as stream:  # type: ignore[arg-type]
        fragments = [e.partial_json for e in stream if e.type == "input_json"]
        streamed = stream.get_final_message()
    [plain_call] = plain.content
    [streamed_call] = streamed.content
    assert isinstance(plain_call, anthropic.types.ToolUseBlock)
    assert isinstance(streamed_call, anthropic.types.ToolUseBlock)
    assert streamed_call.input == plain_call.input
    assert len(fragments) > 2
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    jsonschema.validate(plain_call.input, SCHEMAS["move_robot"])


def test_tool_choice_none_answers_in_text(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=8,
        messages=[{"role": "user", "content": PROMPTS["get_weather"]}],
        tools=[tool("get_weather")],
        tool_choice={"type": "none"},
    )
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason in ("end_turn", "max_tokens")
