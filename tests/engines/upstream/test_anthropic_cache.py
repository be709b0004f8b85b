"""Prompt caching through an Anthropic upstream: the caller's cache_control marks are
sent as they came, and the upstream's cache counts reach the client's usage and
Parley's usage records unchanged (api-spec §16)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from parley.config import ModelConfig
from tests.conftest import running_app
from tests.engines.upstream.conftest import sse, upstream_settings
from tests.engines.upstream.fake_openai import serve_asgi

USAGE = {
    "input_tokens": 21,
    "cache_creation_input_tokens": 1200,
    "cache_read_input_tokens": 3400,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
    "output_tokens": 1,
}


def upstream_app(seen: list[dict[str, Any]]) -> Starlette:
    async def messages(request: Request) -> Response:
        seen.append(await request.json())
        message = {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": "claude-up",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": USAGE,
        }
        events = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {**USAGE, "output_tokens": 3},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]

        async def stream() -> AsyncIterator[bytes]:
            for name, data in events:
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return Response('{"data": []}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
REQUEST = {
    "model": "claude-up",
    "max_tokens": 50,
    "system": [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "A long manual...", "cache_control": HOUR},
    ],
    "tools": [
        {
            "name": "lookup",
            "input_schema": {"type": "object", "properties": {}},
            "cache_control": EPHEMERAL,
        }
    ],
    "messages": [
        {
            "role": "user",
            "content": "A long document",
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "lookup",
                    "input": {},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "found"}],
                    "cache_control": EPHEMERAL,
                },
                {"type": "text", "text": "Summarise."},
            ],
        },
    ],
    "cache_control": EPHEMERAL,
}
# Four breakpoints, the API's limit: system, tools, a tool result, automatic.


@pytest.mark.parametrize("stream", [False, True])
async def test_cache_marks_go_up_and_cache_counts_come_back(tmp_path: Path, stream: bool) -> None:
    seen: list[dict[str, Any]] = []
    async with serve_asgi(upstream_app(seen)) as url:
        model = ModelConfig.model_validate(
            {
                "id": "claude-up",
                "backends": [
                    {"engine": "anthropic", "base_url": url, "model": "claude-up", "api_key": "k"}
                ],
            }
        )
        async with running_app(upstream_settings(tmp_path, model)) as (svc, http):
            response = await http.post("/v1/messages", json={**REQUEST, "stream": stream})
            assert response.status_code == 200, response.text
            if stream:
                events = sse(response.text)
                start = events[0][1]["message"]["usage"]
                final = next(d for n, d in events if n == "message_delta")["usage"]
            else:
                start = final = response.json()["usage"]
            await svc.usage.flush()
            (row,) = await svc.usage.store.rows(models=["claude-up"])

    (sent,) = seen
    assert sent["system"] == REQUEST["system"]
    assert sent["tools"][0]["cache_control"] == EPHEMERAL
    assert sent["messages"] == REQUEST["messages"]
    assert sent["cache_control"] == EPHEMERAL
    for usage in (start, final):
        assert usage["input_tokens"] == 21
        assert usage["cache_creation_input_tokens"] == 1200
        assert usage["cache_read_input_tokens"] == 3400
    if not stream:
        assert final["cache_creation"] == USAGE["cache_creation"]
    # Parley's own usage records keep them apart too.
    assert row.counts["input_tokens"] == 21
    assert row.counts["cache_creation_input_tokens"] == 1200
    assert row.counts["cache_read_input_tokens"] == 3400
