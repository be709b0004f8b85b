"""Parley in front of a scripted OpenAI-compatible upstream: the client sees the
Claude API exactly (api-spec §5, §6, §12), whatever the upstream does."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from parley.config import Tier
from tests.conftest import running_app
from tests.engines.upstream.conftest import (
    UPSTREAM_MODEL,
    Fake,
    error_of,
    live_parley,
    message_body,
    names,
    openai_model,
    sse,
    upstream_settings,
)
from tests.images import png
from tests.waiting import eventually


async def test_plain_message(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post("/v1/messages", json=message_body("say: Hello there"))
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["model"] == UPSTREAM_MODEL
    assert message["content"] == [{"type": "text", "text": "Hello there"}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    # The upstream's own counts (the fake says 11 prompt tokens), not Parley's estimate.
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (11, 2)


async def test_stream_event_order(fake: Fake, tmp_path: Path) -> None:
    fake.state.token_delay = 0.02  # a token's pace: a delta a chunk
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body("say: one two three", stream=True)
        )
    assert response.status_code == 200
    events = sse(response.text)
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] > 0  # an estimate: the upstream says at the end
    assert (start["stop_reason"], start["stop_sequence"], start["content"]) == (None, None, [])
    assert [d["delta"]["text"] for n, d in events if n == "content_block_delta"] == [
        "one ",
        "two ",
        "three",
    ]
    delta = events[-2][1]
    assert (delta["delta"]["stop_reason"], delta["delta"]["stop_sequence"]) == ("end_turn", None)
    assert (delta["usage"]["input_tokens"], delta["usage"]["output_tokens"]) == (11, 3)


async def test_stop_sequence_is_found_and_the_upstream_stopped(fake: Fake, tmp_path: Path) -> None:
    fake.state.token_delay = 0.02
    words = " ".join(f"w{i}" for i in range(40))
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post(
            "/v1/messages",
            json=message_body(f"say: {words}", stop_sequences=["w3 "]),
        )
        message = response.json()
        assert message["content"] == [{"type": "text", "text": "w0 w1 w2 "}]
        assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "w3 ")
        await eventually(lambda: fake.state.cancelled == 1)


async def test_length_is_max_tokens(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post("/v1/messages", json=message_body("say: a b\nfinish: length"))
    assert response.json()["stop_reason"] == "max_tokens"


async def test_pings_while_the_upstream_reads_the_prompt(fake: Fake, tmp_path: Path) -> None:
    settings = upstream_settings(tmp_path, openai_model(fake.url), ping_interval=0.05)
    async with running_app(settings) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body("prefill_delay: 0.4\nsay: done", stream=True)
        )
    order = names(sse(response.text))
    assert order[0] == "message_start"
    before_reply = order[1 : order.index("content_block_start")]
    assert before_reply
    assert set(before_reply) == {"ping"}
    assert order[-1] == "message_stop"


async def test_pings_when_the_upstream_holds_its_headers(fake: Fake, tmp_path: Path) -> None:
    model = openai_model(fake.url, header_wait=0.05)
    settings = upstream_settings(tmp_path, model, ping_interval=0.05)
    async with running_app(settings) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body("headers_delay: 0.4\nsay: done", stream=True)
        )
    order = names(sse(response.text))
    assert "ping" in order[1 : order.index("content_block_start")]
    assert order[-1] == "message_stop"


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_429_is_a_429_with_its_delay(
    fake: Fake, tmp_path: Path, stream: bool
) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post("/v1/messages", json=message_body("status: 429", stream=stream))
    assert response.status_code == 429
    assert error_of(response)["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-should-retry"] == "true"


@pytest.mark.parametrize(
    ("status", "expected", "error_type"),
    [(503, 529, "overloaded_error"), (500, 500, "api_error"), (504, 529, "overloaded_error")],
)
async def test_upstream_5xx_before_the_reply_is_an_http_error(
    fake: Fake, tmp_path: Path, status: int, expected: int, error_type: str
) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body(f"status: {status}", stream=True)
        )
    assert response.status_code == expected
    assert error_of(response)["type"] == error_type
    assert response.headers["x-should-retry"] == "true"


async def test_unreachable_upstream_is_overloaded(tmp_path: Path) -> None:
    model = openai_model("http://127.0.0.1:9/v1")
    async with running_app(upstream_settings(tmp_path, model)) as (_, http):
        response = await http.post("/v1/messages", json=message_body("hi", stream=True))
    assert response.status_code == 529
    assert error_of(response) == {"type": "overloaded_error", "message": "Overloaded"}
    assert response.headers["x-should-retry"] == "true"


async def test_upstream_dying_mid_reply_is_an_error_event(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body("say: a b c d\ndie_after: 2", stream=True)
        )
    assert response.status_code == 200
    events = sse(response.text)
    order = names(events)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "a b "  # what arrived before the upstream died
    assert order[-1] == "error"
    assert "message_stop" not in order
    assert events[-1][1]["error"]["type"] == "api_error"


async def test_error_chunk_mid_reply_is_an_error_event(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body("say: a b c\nerror_after: 1", stream=True)
        )
    events = sse(response.text)
    assert names(events)[-1] == "error"
    assert events[-1][1]["error"] == {"type": "api_error", "message": "Internal server error"}


async def test_tool_call_streams_as_input_json_delta(fake: Fake, tmp_path: Path) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    tools = [
        {
            "name": "get_weather",
            "description": "Weather by city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    body = message_body(f"tool: get_weather {arguments}", tools=tools, stream=True)
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        streamed = await http.post("/v1/messages", json=body)
        plain = await http.post("/v1/messages", json={**body, "stream": False})
    events = sse(streamed.text)
    start = next(d for n, d in events if n == "content_block_start")
    assert start["index"] == 0
    assert start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["name"] == "get_weather"
    assert start["content_block"]["id"].startswith("toolu_")
    assert start["content_block"]["input"] == {}
    fragments = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert len(fragments) > 2
    assert json.loads("".join(fragments)) == json.loads(arguments)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    message = plain.json()
    assert message["stop_reason"] == "tool_use"
    assert message["content"][0]["input"] == json.loads(arguments)
    sent = fake.state.requests[0]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "auto"


async def test_models_endpoint_reports_the_declared_limits(fake: Fake, tmp_path: Path) -> None:
    model = openai_model(fake.url)
    model.images = True
    async with running_app(upstream_settings(tmp_path, model)) as (_, http):
        info = (await http.get("/v1/models/up")).json()
    assert info["id"] == UPSTREAM_MODEL
    assert (info["max_input_tokens"], info["max_tokens"]) == (4096, 512)
    assert info["capabilities"]["image_input"] == {"supported": True}


async def test_parleys_own_auth_applies_first(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post(
            "/v1/messages", json=message_body("hi"), headers={"x-api-key": "sk-wrong"}
        )
    assert response.status_code == 401
    assert fake.state.requests == []


async def test_a_client_going_away_cancels_the_upstream(fake: Fake, tmp_path: Path) -> None:
    fake.state.token_delay = 0.05
    words = " ".join(["w"] * 200)
    async with live_parley(upstream_settings(tmp_path, openai_model(fake.url))) as parley:
        async with parley.client() as http:
            body = message_body(f"say: {words}", stream=True)
            async with http.stream("POST", "/v1/messages", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: content_block_delta"):
                        break  # the reply is streaming: go away
        await eventually(lambda: fake.state.cancelled == 1)
    assert fake.state.completed == 0


async def test_usage_is_recorded_with_the_upstreams_counts(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (svc, http):
        response = await http.post("/v1/messages", json=message_body("say: a b c d e"))
        assert response.status_code == 200
        await svc.drain()
        rows = await svc.usage.store.rows()
    assert sum(r.counts["output_tokens"] for r in rows) == 5
    assert sum(r.counts["input_tokens"] for r in rows) == 11


def image_message(data: bytes) -> dict[str, object]:
    return message_body(
        "What is in the picture?",
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": base64.b64encode(data).decode(),
                        },
                    },
                    {"type": "text", "text": "say: a cat"},
                ],
            }
        ],
    )


async def test_images_are_refused_unless_declared(fake: Fake, tmp_path: Path) -> None:
    async with running_app(upstream_settings(tmp_path, openai_model(fake.url))) as (_, http):
        response = await http.post("/v1/messages", json=image_message(png(4, 3)))
    assert response.status_code == 400
    assert "does not support image input" in error_of(response)["message"]
    assert fake.state.requests == []


async def test_declared_images_go_upstream_as_data_urls(fake: Fake, tmp_path: Path) -> None:
    model = openai_model(fake.url)
    model.images = True
    async with running_app(upstream_settings(tmp_path, model)) as (_, http):
        response = await http.post("/v1/messages", json=image_message(png(4, 3)))
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "a cat"}]
    image, text = fake.state.requests[0]["messages"][0]["content"]
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(
        png(4, 3)
    ).decode("ascii")
    assert text == {"type": "text", "text": "say: a cat"}


async def test_refused_requests_open_no_upstream_request(fake: Fake, tmp_path: Path) -> None:
    # Over its rate limit, a client gets 429s; the upstream never hears of them.
    tiers = {"default": Tier(requests_per_minute=2)}
    settings = upstream_settings(tmp_path, openai_model(fake.url), tiers=tiers)
    async with running_app(settings) as (svc, http):
        answers = [
            await http.post("/v1/messages", json=message_body("say: hi", stream=stream))
            for stream in (False, True) * 5
        ]
        await svc.drain()
    assert [a.status_code for a in answers] == [200, 200] + [429] * 8
    assert len(fake.state.requests) == 2
    assert all(error_of(a)["type"] == "rate_limit_error" for a in answers[2:])
