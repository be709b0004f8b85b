"""Tool use on the wire through the scripted engine (api-spec §5.3, §5.4, §6.3)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from parley.config import ModelConfig
from tests.conftest import SCRIPTED_MODEL, running_app, scripted_settings
from tests.server.test_streaming import Event, parse_sse
from tests.server.test_validation import assert_error

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "minLength": 2},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["location", "unit", "days"],
    },
}
TIME = {
    "name": "get_time",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}


def body(content: Any, **overrides: Any) -> dict[str, Any]:
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    data: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": messages,
        "tools": [WEATHER, TIME],
    }
    data.update(overrides)
    return data


async def create(client: httpx.AsyncClient, data: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/messages", json=data)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


async def stream(client: httpx.AsyncClient, data: dict[str, Any]) -> list[Event]:
    response = await client.post("/v1/messages", json={**data, "stream": True})
    assert response.status_code == 200, response.text
    return parse_sse(response.text)


async def error(client: httpx.AsyncClient, data: dict[str, Any], message: str) -> None:
    assert_error(
        await client.post("/v1/messages", json=data), 400, "invalid_request_error", message
    )


# --- calls --------------------------------------------------------------------------


async def test_tool_directive_answers_with_a_tool_use_block(client: httpx.AsyncClient) -> None:
    message = await create(client, body('tool: get_weather {"location": "Paris"}'))
    assert message["stop_reason"] == "tool_use"
    assert message["stop_sequence"] is None
    [block] = message["content"]
    assert block["type"] == "tool_use"
    assert re.fullmatch(r"toolu_01[0-9A-Za-z]{22}", block["id"])
    assert block["name"] == "get_weather"
    assert block["input"] == {"location": "Paris"}


async def test_text_then_calls_in_order(client: httpx.AsyncClient) -> None:
    prompt = 'say: Let me look.\ntool: get_weather {"location": "Oslo"}\ntool: get_time {}'
    message = await create(client, body(prompt))
    assert [b["type"] for b in message["content"]] == ["text", "tool_use", "tool_use"]
    assert message["content"][0]["text"] == "Let me look."
    assert [b["name"] for b in message["content"][1:]] == ["get_weather", "get_time"]
    assert message["content"][1]["id"] != message["content"][2]["id"]
    assert message["stop_reason"] == "tool_use"


async def test_disable_parallel_tool_use_keeps_one_call(client: httpx.AsyncClient) -> None:
    prompt = 'tool: get_weather {"location": "Oslo"}\ntool: get_time {}'
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    message = await create(client, body(prompt, tool_choice=choice))
    assert [b["name"] for b in message["content"]] == ["get_weather"]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("choice", "name"),
    [({"type": "any"}, "get_weather"), ({"type": "tool", "name": "get_time"}, "get_time")],
)
async def test_forced_choice_without_directive_calls_with_a_valid_input(
    client: httpx.AsyncClient, choice: dict[str, Any], name: str
) -> None:
    message = await create(client, body("What is it like outside?", tool_choice=choice))
    [block] = message["content"]
    assert block["type"] == "tool_use"
    assert block["name"] == name
    schema = {"get_weather": WEATHER, "get_time": TIME}[name]["input_schema"]
    jsonschema.validate(block["input"], schema)
    assert message["stop_reason"] == "tool_use"


async def test_tool_choice_tool_ignores_calls_to_other_tools(client: httpx.AsyncClient) -> None:
    choice = {"type": "tool", "name": "get_time"}
    message = await create(client, body('tool: get_weather {"location": "x"}', tool_choice=choice))
    assert [b["name"] for b in message["content"]] == ["get_time"]


async def test_tool_choice_none_never_calls(client: httpx.AsyncClient) -> None:
    message = await create(
        client,
        body('say: No tools today.\ntool: get_time {"zone": "UTC"}', tool_choice={"type": "none"}),
    )
    assert message["content"] == [{"type": "text", "text": "No tools today."}]
    assert message["stop_reason"] == "end_turn"


async def test_auto_without_directive_answers_in_text(client: httpx.AsyncClient) -> None:
    message = await create(client, body("say: Sunny."))
    assert message["content"] == [{"type": "text", "text": "Sunny."}]
    assert message["stop_reason"] == "end_turn"


async def test_max_tokens_inside_a_call_keeps_the_partial_input(
    client: httpx.AsyncClient,
) -> None:
    prompt = 'tool: get_weather {"location": "Paris", "unit": "celsius", "days": 3}'
    # 1 token for the name, then one per word of the input JSON.
    message = await create(client, body(prompt, max_tokens=5))
    assert message["stop_reason"] == "max_tokens"
    [block] = message["content"]
    assert block["type"] == "tool_use"
    assert block["input"] == {"location": "Paris", "unit": "celsius"}
    assert message["usage"]["output_tokens"] == 5


# --- streaming ----------------------------------------------------------------------


async def test_stream_carries_the_input_as_json_fragments(client: httpx.AsyncClient) -> None:
    data = body('say: Checking.\ntool: get_weather {"location": "São Paulo", "days": 2}')
    events = await stream(client, data)
    names = [e.name for e in events if e.name != "ping"]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * (len(names) - 8),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [e.data for e in events if e.name == "content_block_start"]
    assert starts[0] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    tool_start = starts[1]
    assert tool_start["index"] == 1
    assert tool_start["content_block"]["type"] == "tool_use"
    assert tool_start["content_block"]["name"] == "get_weather"
    assert tool_start["content_block"]["input"] == {}
    assert tool_start["content_block"]["id"].startswith("toolu_")
    fragments = [
        e.data["delta"]["partial_json"]
        for e in events
        if e.name == "content_block_delta" and e.data["index"] == 1
    ]
    assert all(
        e.data["delta"]["type"] == "input_json_delta"
        for e in events
        if e.name == "content_block_delta" and e.data["index"] == 1
    )
    assert fragments[0] == ""  # the real API opens with an empty fragment (§6.3)
    assert len(fragments) > 2
    assert json.loads("".join(fragments)) == {"location": "São Paulo", "days": 2}
    delta = next(e.data for e in events if e.name == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"

    plain = await create(client, data)
    assert plain["content"][1]["input"] == json.loads("".join(fragments))
    assert delta["usage"]["output_tokens"] == plain["usage"]["output_tokens"]


async def test_stream_with_a_no_argument_call(client: httpx.AsyncClient) -> None:
    events = await stream(client, body("tool: get_time"))
    fragments = [e.data["delta"]["partial_json"] for e in events if e.name == "content_block_delta"]
    assert json.loads("".join(fragments)) == {}


async def test_stop_sequences_do_not_apply_inside_tool_input(client: httpx.AsyncClient) -> None:
    data = body('tool: get_weather {"location": "STOP"}', stop_sequences=["STOP"])
    message = await create(client, data)
    assert message["content"][0]["input"] == {"location": "STOP"}
    assert message["stop_reason"] == "tool_use"


# --- the loop: results in the next user turn ------------------------------------------------


def loop_messages(call_id: str, result: Any, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "tool: get_time"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call_id, "name": "get_time", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": result, **extra}
            ],
        },
    ]


async def test_tool_result_in_the_next_turn_gets_a_final_answer(
    client: httpx.AsyncClient,
) -> None:
    message = await create(client, body(loop_messages("toolu_01abc", "12:00 UTC")))
    assert message["content"] == [{"type": "text", "text": "Echo: 12:00 UTC"}]
    assert message["stop_reason"] == "end_turn"


async def test_tool_result_with_block_content_and_is_error(client: httpx.AsyncClient) -> None:
    blocks = [{"type": "text", "text": "zone"}, {"type": "text", "text": "unknown"}]
    message = await create(client, body(loop_messages("toolu_01abc", blocks, is_error=True)))
    assert message["content"][0]["text"] == "Echo: [error] zone unknown"


async def test_count_tokens_includes_tools_and_tool_blocks(client: httpx.AsyncClient) -> None:
    async def counted(data: dict[str, Any]) -> int:
        fields = {
            k: v for k, v in data.items() if k in ("model", "messages", "tools", "tool_choice")
        }
        response = await client.post("/v1/messages/count_tokens", json=fields)
        assert response.status_code == 200, response.text
        tokens: int = response.json()["input_tokens"]
        return tokens

    with_tools = body(loop_messages("toolu_01abc", "12:00 UTC"))
    without_tools = {k: v for k, v in with_tools.items() if k != "tools"}
    text_only = body("tool: get_time")
    del text_only["tools"]
    assert await counted(with_tools) > await counted(without_tools) > await counted(text_only)
    message = await create(client, with_tools)
    assert message["usage"]["input_tokens"] == await counted(with_tools)


# --- validation -----------------------------------------------------------------------


def tool(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "input_schema": {"type": "object"}, **fields}


@pytest.mark.parametrize(
    ("tools", "extra", "message"),
    [
        (
            [tool(name="bad name")],
            {},
            "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        ),
        (
            [tool(name="x" * 129)],
            {},
            "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        ),
        (
            [tool(input_schema={"type": "string"})],
            {},
            "tools.0.custom.input_schema.type: Input should be 'object'",
        ),
        ([tool(input_schema={})], {}, "tools.0.custom.input_schema.type: Field required"),
        (
            [
                tool(),
                tool(
                    name="u",
                    input_schema={"type": "object", "properties": {"a": {"type": "strin"}}},
                ),
            ],
            {},
            "tools.1.custom.input_schema: JSON schema is invalid. It must match JSON Schema "
            "draft 2020-12 (https://json-schema.org/draft/2020-12). Learn more about tool use "
            "at https://docs.claude.com/en/docs/tool-use.",
        ),
        (
            [tool(input_schema={"type": "object", "anyOf": [{"required": ["a"]}]})],
            {},
            "tools.0.custom.input_schema: input_schema does not support oneOf, allOf, or "
            "anyOf at the top level",
        ),
        ([tool(), tool()], {}, "tools: Tool names must be unique."),
        (
            [tool(input_examples=[{}])],
            {},
            "tools.0.custom.input_examples: Extra inputs are not permitted",
        ),
        (
            [{"type": "web_search_20250305", "name": "web_search"}],
            {},
            f"tools.0: tool type 'web_search_20250305' is not supported by model {SCRIPTED_MODEL}",
        ),
        (
            [tool()],
            {"tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.tool.name: Tool 'nope' not found in provided tools",
        ),
        ([tool()], {"tool_choice": {"type": "tool"}}, "tool_choice.tool.name: Field required"),
        (
            None,
            {"tool_choice": {"type": "any"}},
            "tool_choice may only be specified while providing tools.",
        ),
        (
            [tool()],
            {"tool_choice": {"type": "none", "disable_parallel_tool_use": True}},
            # The discriminator tag stays in the path, as for `tools.0.custom.name`.
            "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted",
        ),
    ],
)
async def test_tool_definition_errors(
    client: httpx.AsyncClient, tools: Any, extra: dict[str, Any], message: str
) -> None:
    data = body("hi", tools=tools, **extra)
    if tools is None:
        del data["tools"]
    await error(client, data, message)


async def test_tool_choice_auto_or_none_without_tools_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    for choice in ({"type": "auto"}, {"type": "none"}):
        data = body("say: ok", tool_choice=choice)
        del data["tools"]
        assert (await create(client, data))["content"][0]["text"] == "ok"


def use(call_id: str, name: str = "get_time") -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {}}


def result(call_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": "ok"}


MISSING = (
    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
    "{ids}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
    "message."
)
ORPHAN = (
    "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. "
    "Each `tool_result` block must have a corresponding `tool_use` block in the previous "
    "message."
)


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use("toolu_a"), use("toolu_b")]},
                {"role": "user", "content": [result("toolu_a"), {"type": "text", "text": "go"}]},
            ],
            MISSING.format(i=1, ids="toolu_b"),
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use("toolu_a")]},
                {"role": "user", "content": "no result"},
            ],
            MISSING.format(i=1, ids="toolu_a"),
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "x"}, use("toolu_a")]},
            ],
            MISSING.format(i=1, ids="toolu_a"),
        ),
        (
            [{"role": "user", "content": [result("toolu_x")]}],
            ORPHAN.format(i=0, j=0, id="toolu_x"),
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use("toolu_a")]},
                {"role": "user", "content": [result("toolu_a"), result("toolu_z")]},
            ],
            ORPHAN.format(i=2, j=1, id="toolu_z"),
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use("toolu_a"), use("toolu_a")]},
                {"role": "user", "content": [result("toolu_a")]},
            ],
            "messages.1.content.1: `tool_use` ids must be unique",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use("toolu_a")]},
                {"role": "user", "content": [result("toolu_a"), result("toolu_a")]},
            ],
            "messages.2.content.1: each tool_use must have a single result. Found multiple "
            "`tool_result` blocks with id: toolu_a",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use("toolu a")]},
            ],
            "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
        ),
    ],
)
async def test_pairing_errors(
    client: httpx.AsyncClient, messages: list[dict[str, Any]], message: str
) -> None:
    await error(client, body(messages), message)


async def test_a_model_declared_without_tools_refuses_them(tmp_path: Path) -> None:
    models = [ModelConfig(id="plain-1", engine="scripted", tools=False)]
    async with running_app(scripted_settings(tmp_path / "data", models=models)) as (_, http):
        await error(
            http, body("hi", model="plain-1"), "tools: model plain-1 does not support tool use."
        )
        listed = (await http.get("/v1/models/plain-1")).json()
        assert listed["capabilities"]["tool_use"] == {"supported": False}
