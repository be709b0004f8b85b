"""Streamed messages: SSE framing, event order and payloads (api-spec §6, §7;
api-version §19.7).

httpx's ASGI transport buffers the whole response, so these tests check the
complete SSE body rather than when each frame arrived.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL


@dataclass
class Event:
    name: str
    data: dict[str, Any]


def parse_sse(raw: str) -> list[Event]:
    """Strict parse: every frame is exactly `event:` + `data:` + blank line (§6.1)."""
    assert raw.endswith("\n\n"), raw[-200:]
    assert "\r" not in raw
    events = []
    for frame in raw[:-2].split("\n\n"):
        lines = frame.split("\n")
        assert len(lines) == 2, frame
        assert lines[0].startswith("event: "), frame
        assert lines[1].startswith("data: "), frame
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        # Both SDKs dispatch on the event name, which must equal data.type (§6.1).
        assert data["type"] == name, frame
        events.append(Event(name, data))
    return events


def params(prompt: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    body.update(overrides)
    return body


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Event]:
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["request-id"].startswith("req_")
    return parse_sse(response.text)


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


def streamed_text(events: list[Event]) -> str:
    return "".join(
        e.data["delta"]["text"]
        for e in events
        if e.name == "content_block_delta" and e.data["delta"]["type"] == "text_delta"
    )


async def test_event_order(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("count: 3"))
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
    assert events[1].data == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[2].data == {"type": "ping"}
    for delta in events[3:6]:
        assert delta.data["index"] == 0
        assert delta.data["delta"]["type"] == "text_delta"
    assert events[6].data == {"type": "content_block_stop", "index": 0}
    assert events[-1].data == {"type": "message_stop"}


async def test_message_start(client: httpx.AsyncClient) -> None:
    body = params("say: hi there")
    events = await stream(client, body)
    start = events[0]
    assert start.name == "message_start"
    message = start.data["message"]
    assert message["id"].startswith("msg_")
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == SCRIPTED_MODEL
    assert message["content"] == []
    assert message["stop_reason"] is None
    assert message["stop_sequence"] is None
    # api-version §19.7: stop_details travels only in message_delta.
    assert "stop_details" not in message
    usage = message["usage"]
    counted = await client.post(
        "/v1/messages/count_tokens",
        json={"model": SCRIPTED_MODEL, "messages": body["messages"]},
    )
    assert usage["input_tokens"] == counted.json()["input_tokens"]
    assert usage["cache_creation_input_tokens"] == 0
    assert usage["cache_read_input_tokens"] == 0
    assert usage["output_tokens"] >= 0


async def test_message_delta_has_cumulative_usage(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("count: 7"))
    deltas = [e for e in events if e.name == "content_block_delta"]
    assert len(deltas) == 7
    (message_delta,) = [e for e in events if e.name == "message_delta"]
    assert message_delta.data["delta"]["stop_reason"] == "end_turn"
    assert message_delta.data["delta"]["stop_sequence"] is None
    assert message_delta.data["delta"].get("stop_details") is None
    # The total, not an increment since message_start (§6.3).
    assert message_delta.data["usage"]["output_tokens"] == 7


async def test_streamed_text_equals_the_plain_reply(client: httpx.AsyncClient) -> None:
    body = params("tell me something\nwith two lines", system="Be kind.")
    events = await stream(client, body)
    plain = await client.post("/v1/messages", json={**body, "stream": False})
    assert plain.status_code == 200, plain.text
    message = plain.json()
    assert streamed_text(events) == message["content"][0]["text"]
    assert streamed_text(events) == "Echo: tell me something\nwith two lines"
    (delta,) = [e for e in events if e.name == "message_delta"]
    assert delta.data["usage"]["output_tokens"] == message["usage"]["output_tokens"]
    assert delta.data["delta"]["stop_reason"] == message["stop_reason"]
    assert events[0].data["message"]["usage"]["input_tokens"] == message["usage"]["input_tokens"]


async def test_max_tokens_stop_in_a_stream(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("count: 50", max_tokens=5))
    assert streamed_text(events) == "1 2 3 4 5 "
    assert names(events)[-2:] == ["message_delta", "message_stop"]
    delta = events[-2].data
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 5


async def test_stop_sequence_in_a_stream_sends_no_part_of_it(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("say: alpha beta gamma delta", stop_sequences=["a gam"]))
    assert streamed_text(events) == "alpha bet"
    for event in events:
        if event.name == "content_block_delta":
            assert "gam" not in event.data["delta"]["text"]
    delta = events[-2].data
    assert delta["delta"] == {
        "stop_reason": "stop_sequence",
        "stop_sequence": "a gam",
        "stop_details": None,
    }
    assert names(events)[-1] == "message_stop"


async def test_stream_without_content(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("say: halt", stop_sequences=["halt"]))
    # No text, so no content block; the stream still ends properly.
    assert names(events) == ["message_start", "message_delta", "message_stop"]
    assert events[1].data["delta"]["stop_reason"] == "stop_sequence"


async def test_max_tokens_zero_in_a_stream(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("count: 3", max_tokens=0))
    assert names(events) == ["message_start", "message_delta", "message_stop"]
    assert events[1].data["delta"]["stop_reason"] == "max_tokens"
    assert events[1].data["usage"]["output_tokens"] == 0


async def test_stream_reports_the_requested_alias(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("say: ok", model="scripted"))
    assert events[0].data["message"]["model"] == "scripted"


async def test_only_documented_event_names(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("count: 20", stop_sequences=["1 5"]))
    documented = {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
    assert set(names(events)) <= documented
    assert names(events).count("message_start") == 1
    assert names(events).count("message_stop") == 1


async def test_stream_decided_by_body_not_accept(client: httpx.AsyncClient) -> None:
    # The SDKs send Accept: application/json even when streaming (§1).
    response = await client.post(
        "/v1/messages", json=params("say: ok"), headers={"accept": "application/json"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    plain = await client.post(
        "/v1/messages",
        json=params("say: ok", stream=False),
        headers={"accept": "text/event-stream"},
    )
    assert plain.headers["content-type"].startswith("application/json")


async def test_error_after_the_first_token(client: httpx.AsyncClient) -> None:
    events = await stream(client, params("fail: overloaded_error"))
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert events[-1].data == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert "message_stop" not in names(events)


@pytest.mark.parametrize("error_type", ["api_error", "rate_limit_error", "no_such_error"])
async def test_other_errors_in_a_stream(client: httpx.AsyncClient, error_type: str) -> None:
    events = await stream(client, params(f"say: a b c\nfail: {error_type}"))
    assert events[-1].name == "error"
    expected_type = "api_error" if error_type == "no_such_error" else error_type
    assert events[-1].data["error"]["type"] == expected_type
    assert "message_stop" not in names(events)
    assert streamed_text(events) == "a "


async def test_stream_after_a_failed_stream(client: httpx.AsyncClient) -> None:
    # A failed stream gives its slot back (one slot, queue of two).
    for _ in range(4):
        events = await stream(client, params("fail: overloaded_error"))
        assert events[-1].name == "error"
    events = await stream(client, params("say: fine"))
    assert streamed_text(events) == "fine"
    assert names(events)[-1] == "message_stop"
