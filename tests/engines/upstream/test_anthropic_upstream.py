"""The Anthropic upstream engine, against a second `parley serve` (scripted engine)
acting as the upstream API: events relayed as they arrive, exact usage, the
server-held key never shown, Parley's own keys, limits, usage and CORS on its side."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from parley.config import ModelConfig
from tests.conftest import running_app
from tests.engines.upstream.conftest import error_of, live_parley, names, sse, upstream_settings
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

UPSTREAM_CONFIG = """
[[models]]
id = "scripted-1"
engine = "scripted"
context_window = 4096
max_output_tokens = 1024
slots = 4

[[models]]
id = "slow"
engine = "scripted"
slots = 2
token_delay = 0.15

[[models]]
id = "limited"
engine = "scripted"

[[models]]
id = "thinker"
engine = "scripted"
thinking = true
max_output_tokens = 4096

[tiers.default.models.limited]
requests_per_minute = 1
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    server = ParleyProcess(tmp_path_factory.mktemp("anthropic-upstream"), config=UPSTREAM_CONFIG)
    server.start()
    yield server
    server.stop()


def claude(
    model_id: str, upstream: ParleyProcess, upstream_model: str, **backend: Any
) -> ModelConfig:
    values = {
        "engine": "anthropic",
        "name": "upstream-parley",
        "base_url": upstream.base_url,
        "model": upstream_model,
        "api_key": upstream.api_key,
        **backend,
    }
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "context_window": 4096,
            "max_output_tokens": 512,
            "backends": [values],
        }
    )


def models(upstream: ParleyProcess) -> list[ModelConfig]:
    return [
        claude("claude-up", upstream, "scripted-1"),
        claude("claude-slow", upstream, "slow"),
        claude("claude-limited", upstream, "limited"),
        claude("claude-badkey", upstream, "scripted-1", api_key="sk-parley-not-a-real-key"),
        claude("claude-thinker", upstream, "thinker").model_copy(
            update={"max_output_tokens": 4096}
        ),
    ]


@pytest.fixture
async def http(upstream: ParleyProcess, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = upstream_settings(tmp_path, *models(upstream), ping_interval=0.05)
    async with running_app(settings) as (_, client):
        yield client


def body(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


async def upstream_count(upstream: ParleyProcess, text: str) -> int:
    async with httpx.AsyncClient(
        base_url=upstream.base_url,
        headers={"x-api-key": upstream.api_key, "anthropic-version": "2023-06-01"},
    ) as direct:
        response = await direct.post(
            "/v1/messages/count_tokens",
            json={"model": "scripted-1", "messages": [{"role": "user", "content": text}]},
        )
    count: int = response.json()["input_tokens"]
    return count


async def test_plain_message_with_the_upstreams_exact_usage(
    http: httpx.AsyncClient, upstream: ParleyProcess
) -> None:
    response = await http.post("/v1/messages", json=body("claude-up", "say: Hello from afar"))
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["model"] == "claude-up"
    assert message["content"] == [{"type": "text", "text": "Hello from afar"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == await upstream_count(
        upstream, "say: Hello from afar"
    )
    assert message["usage"]["output_tokens"] == 3


async def test_count_tokens_asks_the_upstream(
    http: httpx.AsyncClient, upstream: ParleyProcess
) -> None:
    text = "How many tokens is this?"
    response = await http.post(
        "/v1/messages/count_tokens",
        json={"model": "claude-up", "messages": [{"role": "user", "content": text}]},
    )
    assert response.json() == {"input_tokens": await upstream_count(upstream, text)}


async def test_events_are_relayed_as_they_arrive(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages", json=body("claude-slow", "count: 4", stream=True))
    events = sse(response.text)
    order = names(events)
    assert order[0] == "message_start"
    assert order[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert deltas == ["1 ", "2 ", "3 ", "4"]
    # The upstream spaces its tokens 0.15 s apart; Parley pings after 0.05 s of silence.
    # Pings between the deltas show each delta went out when it came in, not at the end.
    first = order.index("content_block_delta")
    last = len(order) - 1 - order[::-1].index("content_block_delta")
    assert "ping" in order[first:last]


async def test_stop_sequence_is_the_upstreams(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages",
        json=body("claude-up", "say: one two three four", stop_sequences=["three"]),
    )
    message = response.json()
    assert message["content"] == [{"type": "text", "text": "one two "}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "three")


async def test_max_tokens(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages", json=body("claude-up", "count: 10", max_tokens=3, stream=True)
    )
    events = sse(response.text)
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 3


async def test_an_upstream_error_mid_stream_is_relayed(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages",
        json=body("claude-up", "say: a b c\nfail: overloaded_error", stream=True),
    )
    events = sse(response.text)
    assert names(events)[-1] == "error"
    assert "content_block_delta" in names(events)
    assert events[-1][1]["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_an_upstream_rate_limit_is_a_429_with_its_delay(http: httpx.AsyncClient) -> None:
    first = await http.post("/v1/messages", json=body("claude-limited", "hi"))
    assert first.status_code == 200, first.text
    second = await http.post("/v1/messages", json=body("claude-limited", "hi", stream=True))
    assert second.status_code == 429
    assert error_of(second)["type"] == "rate_limit_error"
    assert 0 < int(second.headers["retry-after"]) <= 60
    assert second.headers["x-should-retry"] == "true"


async def test_tool_calls_are_relayed(http: httpx.AsyncClient) -> None:
    tools = [
        {
            "name": "lookup",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    request = body("claude-up", 'tool: lookup {"q": "otters"}', tools=tools)
    streamed = await http.post("/v1/messages", json={**request, "stream": True})
    events = sse(streamed.text)
    start = next(d for n, d in events if n == "content_block_start")
    assert start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["id"].startswith("toolu_")
    fragments = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json.loads("".join(fragments)) == {"q": "otters"}
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "tool_use"
    plain = (await http.post("/v1/messages", json=request)).json()
    assert plain["content"][0]["input"] == {"q": "otters"}
    assert plain["stop_reason"] == "tool_use"


async def test_the_server_held_key_never_reaches_a_client_or_a_log(
    upstream: ParleyProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    settings = upstream_settings(tmp_path, *models(upstream))
    async with running_app(settings) as (_, http):
        for request in (
            body("claude-up", "say: fine"),
            body("claude-up", "say: fine", stream=True),
            body("claude-up", "say: a b\nfail: api_error", stream=True),
            body("claude-badkey", "hi"),
        ):
            response = await http.post("/v1/messages", json=request)
            seen += [response.text, json.dumps(dict(response.headers))]
        refused = response
    # The upstream refused the wrong key: the client learns nothing about it.
    assert refused.status_code == 500
    assert error_of(refused) == {"type": "api_error", "message": "Internal server error"}
    assert "upstream-parley refused the request: HTTP 401" in caplog.text
    for secret in (upstream.api_key, "sk-parley-not-a-real-key"):
        assert secret not in caplog.text
        assert not any(secret in text for text in seen)


async def test_parleys_own_keys_usage_and_cors_apply(
    upstream: ParleyProcess, tmp_path: Path
) -> None:
    settings = upstream_settings(tmp_path, *models(upstream))
    async with running_app(settings) as (svc, http):
        unknown = await http.post(
            "/v1/messages", json=body("claude-up", "hi"), headers={"x-api-key": "sk-nope"}
        )
        assert unknown.status_code == 401
        browser = await http.post(
            "/v1/messages",
            json=body("claude-up", "say: from a page"),
            headers={
                "origin": "https://app.example",
                "anthropic-dangerous-direct-browser-access": "true",
            },
        )
        assert browser.status_code == 200
        assert browser.headers["access-control-allow-origin"] == "*"
        await svc.drain()
        rows = await svc.usage.store.rows()
    usage = browser.json()["usage"]
    assert sum(r.counts["input_tokens"] for r in rows) == usage["input_tokens"]
    assert sum(r.counts["output_tokens"] for r in rows) == usage["output_tokens"] == 3


async def test_the_sdk_streams_through_both_parleys(
    upstream: ParleyProcess, tmp_path: Path
) -> None:
    async with live_parley(upstream_settings(tmp_path, *models(upstream))) as parley:

        def run() -> tuple[list[str], anthropic.types.Message]:
            with (
                anthropic.Anthropic(base_url=parley.url, api_key=parley.key) as client,
                client.messages.stream(
                    model="claude-slow",
                    max_tokens=50,
                    messages=[{"role": "user", "content": "say: relayed word by word"}],
                ) as stream,
            ):
                texts = list(stream.text_stream)
                return texts, stream.get_final_message()

        texts, final = await asyncio.to_thread(run)
    assert texts == ["relayed ", "word ", "by ", "word"]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4


async def test_thinking_signatures_are_the_upstreams_and_go_back_unchanged(
    http: httpx.AsyncClient, upstream: ParleyProcess
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    sent = body("claude-thinker", "think: hmm\nsay: yes", max_tokens=2048, thinking=thinking)
    first = (await http.post("/v1/messages", json=sent)).json()
    block = first["content"][0]
    assert block["type"] == "thinking"
    assert block["thinking"] == "hmm"
    # The same text signed by the upstream directly: Parley passed its signature on.
    async with httpx.AsyncClient(
        base_url=upstream.base_url,
        headers={"x-api-key": upstream.api_key, "anthropic-version": "2023-06-01"},
    ) as direct:
        own = (await direct.post("/v1/messages", json={**sent, "model": "thinker"})).json()
    assert block["signature"] == own["content"][0]["signature"]
    history = [
        {"role": "user", "content": "think: hmm\nsay: yes"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "say: more"},
    ]
    again = await http.post("/v1/messages", json={**sent, "messages": history})
    assert again.status_code == 200, again.text
    history[1] = {"role": "assistant", "content": [dict(block, thinking="forged")]}
    refused = await http.post("/v1/messages", json={**sent, "messages": history})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "messages.1.content.0: Invalid `signature` in `thinking` block"
    )


async def test_structured_outputs_pass_through(http: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    sent = body(
        "claude-up", "hello", output_config={"format": {"type": "json_schema", "schema": schema}}
    )
    message = (await http.post("/v1/messages", json=sent)).json()
    assert message["content"] == [{"type": "text", "text": '{"ok": false}'}]
