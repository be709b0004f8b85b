"""Chat Completions translation: tools, tool_choice, images, tool results, stream chunks."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest

from parley.config import OpenAIBackendConfig
from parley.core.generation import (
    CacheUsage,
    Finished,
    GenerationRequest,
    ImagePart,
    TextChunk,
    Thinking,
    ThinkingChunk,
    ToolCall,
    ToolCallStart,
    ToolChoice,
    ToolInputChunk,
    ToolResult,
    ToolSpec,
    Turn,
)
from parley.engines.openai_wire import ChatStreamReader, chat_body
from parley.errors import InternalServerError, RateLimitError

CONFIG = OpenAIBackendConfig(engine="openai", base_url="http://x/v1", model="m")
WEATHER = ToolSpec(
    "get_weather",
    "Weather by city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PNG = b"\x89PNG\r\n\x1a\nfake"


def body_for(*turns: Turn, **fields: Any) -> dict[str, Any]:
    request = GenerationRequest(model="x", system=None, turns=turns, max_tokens=10, **fields)
    return chat_body(request, CONFIG)


def test_tools_become_functions() -> None:
    body = body_for(Turn.of("user", "weather?"), tools=(WEATHER,))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": dict(WEATHER.input_schema),
            },
        }
    ]
    assert body["tool_choice"] == "auto"
    assert "parallel_tool_calls" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("any"), "required"),
        (
            ToolChoice("tool", "get_weather"),
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (ToolChoice("none"), "none"),
    ],
)
def test_tool_choice_variants(choice: ToolChoice, expected: object) -> None:
    body = body_for(Turn.of("user", "weather?"), tools=(WEATHER,), tool_choice=choice)
    assert body["tool_choice"] == expected


def test_disable_parallel_tool_use() -> None:
    choice = ToolChoice("any", parallel=False)
    body = body_for(Turn.of("user", "weather?"), tools=(WEATHER,), tool_choice=choice)
    assert body["parallel_tool_calls"] is False


def test_images_become_data_urls() -> None:
    image = ImagePart("image/png", PNG, 10, 10)
    body = body_for(Turn.of("user", "What is this?", image))
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
                },
            ],
        }
    ]


def test_tool_calls_and_results_in_the_history() -> None:
    call = ToolCall("toolu_01", "get_weather", {"city": "Paris"})
    failed = ToolResult("toolu_01", "get_weather", (), is_error=True)
    with_image = ToolResult("toolu_02", "get_weather", (ImagePart("image/png", PNG),))
    body = body_for(
        Turn.of("user", "weather?"),
        Turn.of("assistant", "Let me look.", call, ToolCall("toolu_02", "get_weather", {})),
        Turn("user", (failed, with_image)),
        tools=(WEATHER,),
    )
    assistant, first, second, images = body["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": "toolu_01",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "toolu_02",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            },
        ],
    }
    assert first == {"role": "tool", "tool_call_id": "toolu_01", "content": "Error: "}
    assert second == {"role": "tool", "tool_call_id": "toolu_02", "content": ""}
    # Tool messages carry text only: the result's image follows as a user message.
    assert images["role"] == "user"
    assert images["content"][0]["type"] == "image_url"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def fragment(index: int, name: str | None = None, arguments: str = "") -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name:
        function["name"] = name
    return {"index": index, "function": function}


def test_two_calls_in_a_row_stream_one_after_the_other() -> None:
    reader = ChatStreamReader("up")
    events = []
    for delta in [
        {"content": "Checking."},
        {"tool_calls": [fragment(0, "get_weather")]},
        {"tool_calls": [fragment(0, arguments='{"city": ')]},
        {"tool_calls": [fragment(0, arguments='"Paris"}')]},
        {"tool_calls": [fragment(1, "get_weather", '{"city": "Rome"}')]},
    ]:
        events += reader.feed(chunk(delta))
    events += reader.feed(chunk({}, "tool_calls"))
    events.append(reader.finished())
    assert [type(e).__name__ for e in events] == [
        "TextChunk",
        "ToolCallStart",
        "ToolInputChunk",
        "ToolInputChunk",
        "ToolCallStart",
        "ToolInputChunk",
        "Finished",
    ]
    assert events[1] == ToolCallStart("get_weather", 2)
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "tool_use"


def test_arguments_before_the_name_are_held() -> None:
    reader = ChatStreamReader("up")
    assert reader.feed(chunk({"tool_calls": [fragment(0, arguments='{"a"')]})) == []
    events = reader.feed(chunk({"tool_calls": [fragment(0, "f", ": 1}")]}))
    assert events == [ToolCallStart("f", 2), ToolInputChunk('{"a"', 2), ToolInputChunk(": 1}", 2)]


def test_interleaved_calls_are_an_upstream_error() -> None:
    reader = ChatStreamReader("up")
    reader.feed(chunk({"tool_calls": [fragment(0, "f", "{")]}))
    reader.feed(chunk({"tool_calls": [fragment(1, "g", "{")]}))
    with pytest.raises(InternalServerError):
        reader.feed(chunk({"tool_calls": [fragment(0, arguments="}")]}))


def test_a_stream_without_a_finish_reason_was_cut_off() -> None:
    reader = ChatStreamReader("up")
    assert reader.feed(chunk({"content": "Hel"})) == [TextChunk("Hel", 1)]
    with pytest.raises(InternalServerError):
        reader.finished()


def test_upstream_usage_wins_over_the_chunk_count() -> None:
    reader = ChatStreamReader("up")
    reader.feed(chunk({"content": "a"}, "stop"))
    reader.feed({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 4}})
    assert reader.finished() == Finished("end_turn", 4, input_tokens=12)
    assert reader.prompt_tokens == 12


def test_error_chunks_keep_their_status() -> None:
    reader = ChatStreamReader("up")
    with pytest.raises(RateLimitError):
        reader.feed({"error": {"message": "slow down", "code": 429}})


def test_cached_prompt_tokens_are_cache_reads_apart_from_input_tokens() -> None:
    # usage.prompt_tokens_details.cached_tokens is the part of the prompt read from the
    # server's prefix cache: the API reports it as cache_read_input_tokens, and
    # input_tokens is the rest (api-spec §16).
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 96},
    }
    reader = ChatStreamReader("up")
    reader.feed(chunk({"content": "a"}, "stop"))
    reader.feed({"choices": [], "usage": usage})
    assert reader.finished() == Finished(
        "end_turn", 4, input_tokens=24, cache=CacheUsage(read_input_tokens=96)
    )
    # A server whose flavor says it does not report them: whatever it sends is ignored.
    quiet = ChatStreamReader("up", cached_tokens=False)
    quiet.feed(chunk({"content": "a"}, "stop"))
    quiet.feed({"choices": [], "usage": usage})
    assert quiet.finished() == Finished("end_turn", 4, input_tokens=120)
    # vLLM without --enable-prompt-tokens-details sends null details.
    plain = ChatStreamReader("up")
    plain.feed(chunk({"content": "a"}, "stop"))
    plain.feed({"choices": [], "usage": {"prompt_tokens": 9, "prompt_tokens_details": None}})
    assert plain.finished().cache is None


def test_raw_completion_chunks_carry_text() -> None:
    reader = ChatStreamReader("up")
    events = reader.feed({"choices": [{"index": 0, "text": " blue", "finish_reason": None}]})
    events += reader.feed({"choices": [{"index": 0, "text": ".", "finish_reason": "stop"}]})
    assert events == [TextChunk(" blue", 1), TextChunk(".", 2)]
    assert reader.finished().reason == "end_turn"


SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


def test_an_output_format_is_response_format_json_schema() -> None:
    body = body_for(Turn.of("user", "hi"), output_schema=SCHEMA)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }


def test_strict_tools_are_strict_functions() -> None:
    strict = ToolSpec("check", None, SCHEMA, strict=True)
    body = body_for(Turn.of("user", "hi"), tools=(WEATHER, strict))
    assert "strict" not in body["tools"][0]["function"]
    assert body["tools"][1]["function"]["strict"] is True


def test_a_thinking_upstream_is_told_whether_to_think() -> None:
    request = GenerationRequest(
        model="x",
        system=None,
        turns=(Turn.of("user", "hi"),),
        max_tokens=10,
        thinking=Thinking("adaptive", 5, "max"),
    )
    body = chat_body(request, CONFIG, config_thinks=True)
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["reasoning_effort"] == "high"
    off = chat_body(replace(request, thinking=Thinking()), CONFIG, config_thinks=True)
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    assert "reasoning_effort" not in off
    assert "chat_template_kwargs" not in chat_body(request, CONFIG)


def reasoning_chunks() -> list[dict[str, Any]]:
    return [
        {"choices": [{"index": 0, "delta": {"reasoning_content": "Let me see."}}]},
        {"choices": [{"index": 0, "delta": {"content": "Yes."}, "finish_reason": "stop"}]},
    ]


def test_reasoning_content_is_thinking_when_asked_for() -> None:
    reader = ChatStreamReader("up", thinking=True)
    events = [e for chunk in reasoning_chunks() for e in reader.feed(chunk)]
    assert events == [ThinkingChunk("Let me see.", 1), TextChunk("Yes.", 2)]
    quiet = ChatStreamReader("up", thinking=False)
    assert [e for chunk in reasoning_chunks() for e in quiet.feed(chunk)] == [TextChunk("Yes.", 2)]
