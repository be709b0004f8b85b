"""Tools on servers that cannot take them as OpenAI fields: the request shapes, and the
replies read back (calls in text, a forced call as structured output, a forced
choice that never yields prose, a prefill the server repeats)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from parley.config import OpenAIBackendConfig
from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    ImagePart,
    TextChunk,
    TextPart,
    ToolCall,
    ToolCallStart,
    ToolChoice,
    ToolInputChunk,
    ToolResult,
    ToolSpec,
    Turn,
)
from parley.engines.openai_compat import OpenAICompatEngine, _without_echo
from parley.engines.openai_flavors import FLAVORS
from parley.engines.openai_tools import ReplyShape, call_schema, reply_shape, shaped
from parley.engines.openai_wire import chat_body
from parley.errors import InternalServerError, InvalidRequestError
from tests.engines.upstream.servers import free_port

CONFIG = OpenAIBackendConfig(engine="openai", base_url="http://up/v1", model="m")
WEATHER = ToolSpec(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
CLOCK = ToolSpec("get_time", None, {"type": "object", "properties": {"zone": {"type": "string"}}})


def request(*turns: Turn, **fields: Any) -> GenerationRequest:
    turns = turns or (Turn.of("user", "weather?"),)
    return GenerationRequest(model="x", system=None, turns=turns, max_tokens=10, **fields)


async def events_of(*events: EngineEvent) -> AsyncIterator[EngineEvent]:
    for event in events:
        yield event


async def collect(source: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [e async for e in source]


def texts(*pieces: str) -> list[EngineEvent]:
    return [TextChunk(p, i + 1) for i, p in enumerate(pieces)]


def call_of(events: list[EngineEvent]) -> tuple[str, Any]:
    starts = [e.name for e in events if isinstance(e, ToolCallStart)]
    arguments = "".join(e.partial_json for e in events if isinstance(e, ToolInputChunk))
    assert len(starts) == 1
    return starts[0], json.loads(arguments)


# -- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "choice", "shape"),
    [
        ("vllm", "auto", "native"),
        ("vllm", "any", "native"),
        ("sglang", "tool", "native"),
        ("llama-server", "auto", "native"),
        ("llama-server", "any", "forced_json"),
        ("ollama", "tool", "forced_json"),
        ("ollama", "none", "native"),
        ("llama-cpp-python", "auto", "text_calls"),
        ("llama-cpp-python", "none", "plain"),
        ("llama-cpp-python", "any", "forced_json"),
    ],
)
def test_reply_shapes(flavor: str, choice: str, shape: ReplyShape) -> None:
    tool_choice = ToolChoice(choice, "get_weather" if choice == "tool" else None)  # type: ignore[arg-type]
    req = request(tools=(WEATHER, CLOCK), tool_choice=tool_choice)
    assert reply_shape(req, FLAVORS[flavor]) == shape  # type: ignore[index]


def test_a_forced_call_is_structured_output_over_the_allowed_tools() -> None:
    any_tool = request(tools=(WEATHER, CLOCK), tool_choice=ToolChoice("any"))
    body = chat_body(any_tool, CONFIG, FLAVORS["ollama"])
    assert "tools" not in body
    assert "tool_choice" not in body
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema == call_schema((WEATHER, CLOCK))
    assert [o["properties"]["name"]["enum"] for o in schema["anyOf"]] == [
        ["get_weather"],
        ["get_time"],
    ]
    # The model still reads what the tools are for, and that it must call one.
    system = body["messages"][0]
    assert system["role"] == "system"
    assert "get_weather" in system["content"]
    assert "You must call one of the functions." in system["content"]

    one = request(tools=(WEATHER, CLOCK), tool_choice=ToolChoice("tool", "get_time"))
    body = chat_body(one, CONFIG, FLAVORS["llama-cpp-python"])
    assert body["response_format"] == {"type": "json_object", "schema": call_schema((CLOCK,))}


def test_text_format_turns_write_calls_and_results_out() -> None:
    image = ImagePart("image/png", b"\x89PNG\r\n\x1a\nfake")
    call = ToolCall("toolu_1", "get_weather", {"city": "Paris"})
    result = ToolResult("toolu_1", "get_weather", (TextPart("Sunny"), image))
    req = request(
        Turn.of("user", "weather?"),
        Turn("assistant", (call,)),
        Turn("user", (result,)),
        tools=(WEATHER,),
    )
    body = chat_body(req, CONFIG, FLAVORS["llama-cpp-python"])
    assert "tools" not in body
    _, asked, called, answered = body["messages"]
    assert asked == {"role": "user", "content": "weather?"}
    assert called == {
        "role": "assistant",
        "content": "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}'
        "\n</tool_call>",
    }
    assert answered["role"] == "user"
    assert answered["content"][0] == {
        "type": "text",
        "text": "<tool_response>\nSunny\n</tool_response>",
    }
    assert answered["content"][1]["type"] == "image_url"


@pytest.mark.parametrize(("flavor", "content"), [("vllm", None), ("generic", None)])
def test_native_call_turns_keep_openais_null_content(flavor: str, content: str | None) -> None:
    call = ToolCall("toolu_1", "get_weather", {"city": "Paris"})
    result = ToolResult("toolu_1", "get_weather", (TextPart("Sunny"),))
    req = request(
        Turn.of("user", "weather?"),
        Turn("assistant", (call,)),
        Turn("user", (result,)),
        tools=(WEATHER,),
    )
    messages = chat_body(req, CONFIG, FLAVORS[flavor])["messages"]  # type: ignore[index]
    assert messages[1]["content"] is content
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"}


def test_tool_choice_none_on_a_server_that_ignores_it_sends_no_tools() -> None:
    none = request(tools=(WEATHER,), tool_choice=ToolChoice("none"))
    assert "tools" not in chat_body(none, CONFIG, FLAVORS["ollama"])
    assert chat_body(none, CONFIG, FLAVORS["vllm"])["tool_choice"] == "none"
    auto = request(tools=(WEATHER,))
    ollama = chat_body(auto, CONFIG, FLAVORS["ollama"])
    assert [t["function"]["name"] for t in ollama["tools"]] == ["get_weather"]
    assert "tool_choice" not in ollama


def test_prefill_flags_per_flavor() -> None:
    req = request(Turn.of("user", "Hi"), Turn.of("assistant", "Hello"))
    vllm = chat_body(req, CONFIG, FLAVORS["vllm"])
    assert (vllm["continue_final_message"], vllm["add_generation_prompt"]) == (True, False)
    sglang = chat_body(req, CONFIG, FLAVORS["sglang"])
    assert sglang["continue_final_message"] is True
    assert "add_generation_prompt" not in sglang
    for implicit in ("llama-server", "ollama"):
        body = chat_body(req, CONFIG, FLAVORS[implicit])  # type: ignore[index]
        assert "continue_final_message" not in body
        assert body["messages"][-1] == {"role": "assistant", "content": "Hello"}


def test_stream_usage_follows_the_flavor_unless_configured() -> None:
    assert "stream_options" not in chat_body(request(), CONFIG, FLAVORS["llama-cpp-python"])
    assert "stream_options" in chat_body(request(), CONFIG, FLAVORS["vllm"])
    off = CONFIG.model_copy(update={"stream_usage": False})
    assert "stream_options" not in chat_body(request(), off, FLAVORS["vllm"])


# -- the reply -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        ['{"name": "get_weather", "arguments": {"city": "Pa', 'ris"}}'],
        ['{"name":"get_weather","arguments":{"city":"Paris"}}'],
        ["{", '\n  "name": "get_', 'weather",\n  "arguments": ', '{"city": "Paris"}', "\n}"],
        ['{"name": "get_weather", "arguments": {"city": "a}b"', "}", "}"],
    ],
)
async def test_a_forced_call_in_text_streams_as_a_call(pieces: list[str]) -> None:
    got = await collect(
        shaped(events_of(*texts(*pieces), Finished("end_turn", 9)), "forced_json", forced=True)
    )
    name, arguments = call_of(got)
    assert name == "get_weather"
    assert arguments["city"] in ("Paris", "a}b")
    assert not [e for e in got if isinstance(e, TextChunk)]
    assert isinstance(got[-1], Finished)


async def test_a_forced_call_in_another_key_order_is_read_whole() -> None:
    got = await collect(
        shaped(
            events_of(
                *texts('{"arguments": {"zone": "CET"}, ', '"name": "get_time"}'),
                Finished("end_turn", 3),
            ),
            "forced_json",
            forced=True,
        )
    )
    assert call_of(got) == ("get_time", {"zone": "CET"})


async def test_a_server_that_parses_the_forced_call_itself_passes_through() -> None:
    got = await collect(
        shaped(
            events_of(
                ToolCallStart("get_time", 1),
                ToolInputChunk('{"zone": "UTC"}', 2),
                Finished("tool_use", 2),
            ),
            "forced_json",
            forced=True,
        )
    )
    assert call_of(got) == ("get_time", {"zone": "UTC"})


async def test_prose_under_a_forced_choice_is_an_error_never_text() -> None:
    with pytest.raises(InternalServerError) as caught:
        await collect(
            shaped(
                events_of(*texts("Bienvenue", " à Paris"), Finished("end_turn", 2)),
                "native",
                forced=True,
            )
        )
    assert caught.value.headers["x-should-retry"] == "false"
    with pytest.raises(InternalServerError):
        await collect(
            shaped(
                events_of(*texts("not json"), Finished("end_turn", 1)), "forced_json", forced=True
            )
        )


async def test_text_before_a_forced_call_is_dropped() -> None:
    got = await collect(
        shaped(
            events_of(
                TextChunk("\n", 1),
                ToolCallStart("get_time", 2),
                ToolInputChunk("{}", 3),
                Finished("tool_use", 3),
            ),
            "native",
            forced=True,
        )
    )
    assert [type(e).__name__ for e in got] == ["ToolCallStart", "ToolInputChunk", "Finished"]


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize(
    "pieces",
    [
        [CALL[:15], CALL[15:40], CALL[40:]],
        [CALL + "\nand more text"],
        [CALL[:-9], CALL[-9:-4], CALL[-4:], "<tool_call>"],
        # The server stopped at the closing tag, which it leaves out.
        [CALL.removesuffix("</tool_call>")],
    ],
)
async def test_calls_written_as_text_are_read_back(pieces: list[str]) -> None:
    got = await collect(
        shaped(events_of(*texts(*pieces), Finished("end_turn", 3)), "text_calls", forced=False)
    )
    assert call_of(got) == ("get_weather", {"city": "Paris"})
    assert not [e for e in got if isinstance(e, TextChunk)]


async def test_prose_in_the_text_format_stays_text() -> None:
    prose = await collect(
        shaped(
            events_of(*texts("It is ", "sunny <", "3."), Finished("end_turn", 2)),
            "text_calls",
            forced=False,
        )
    )
    assert "".join(e.text for e in prose if isinstance(e, TextChunk)) == "It is sunny <3."


def test_text_calls_stop_at_the_closing_tag() -> None:
    body = chat_body(request(tools=(WEATHER,)), CONFIG, FLAVORS["llama-cpp-python"])
    assert body["stop"] == ["</tool_call>"]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["The sky is blue."], " blue."),
        (["The sky", " is", " blue."], " blue."),
        ([" blue."], " blue."),  # a server that does not repeat it after all
        (["The sk", "ies are blue."], "The skies are blue."),
    ],
)
async def test_a_repeated_prefill_is_taken_off(pieces: list[str], expected: str) -> None:
    got = await collect(
        _without_echo(events_of(*texts(*pieces), Finished("end_turn", 3)), "The sky is")
    )
    assert "".join(e.text for e in got if isinstance(e, TextChunk)) == expected
    assert isinstance(got[-1], Finished)


# -- the engine ----------------------------------------------------------------------------


def stream(*chunks: dict[str, Any]) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_a_request_prepared_before_the_server_answered_is_planned_again(
    tmp_path: Path,
) -> None:
    # The server is down at start, then comes up as llama-cpp-python: the prefill that
    # was planned as vLLM's flag goes through /v1/completions with the template.
    sent: list[tuple[str, dict[str, Any]]] = []

    async def handle(request: web.Request) -> web.Response:
        if request.method == "GET":
            if request.path == "/v1/models":
                return web.json_response({"data": [{"id": "m", "owned_by": "me"}]})
            if request.path == "/openapi.json":
                return web.json_response({"info": {"title": "🦙 llama.cpp Python API"}})
            return web.Response(status=404)
        sent.append((request.path, await request.json()))
        body = stream({"choices": [{"index": 0, "text": " blue.", "finish_reason": "stop"}]})
        return web.Response(body=body, content_type="text/event-stream")

    template = tmp_path / "chat.jinja"
    template.write_text(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
    )
    port = free_port()
    config = CONFIG.model_copy(
        update={"chat_template": template, "base_url": f"http://127.0.0.1:{port}/v1"}
    )
    engine = OpenAICompatEngine(config)
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await engine.start()  # nobody answers: the flavor stays unknown
        req = request(Turn.of("user", "Sky?"), Turn.of("assistant", "The sky is"))
        prepared = await engine.prepare(req)
        assert prepared.state.body is not None
        assert prepared.state.body["continue_final_message"] is True
        await web.TCPSite(runner, "127.0.0.1", port).start()
        generation = await engine.open(prepared)
        events = [e async for e in generation.events]
    finally:
        await engine.aclose()
        await runner.cleanup()
    assert engine.upstream.flavor.name == "llama-cpp-python"
    ((path, body),) = sent
    assert path == "/v1/completions"
    assert body["prompt"] == "<user>Sky?</user><assistant>The sky is"
    assert [e.text for e in events if isinstance(e, TextChunk)] == [" blue."]


async def test_prefill_refused_where_it_cannot_be_continued() -> None:
    config = CONFIG.model_copy(update={"flavor": "llama-cpp-python"})
    engine = OpenAICompatEngine(
        config, transport=httpx.MockTransport(lambda r: httpx.Response(500))
    )
    try:
        with pytest.raises(InvalidRequestError, match="does not support assistant message prefill"):
            await engine.prepare(request(Turn.of("user", "Hi"), Turn.of("assistant", "Hello")))
    finally:
        await engine.aclose()
