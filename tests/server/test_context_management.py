"""Context management over raw HTTP: edits applied before the prompt is built, and
`context_management.applied_edits` in the Message, the stream's message_delta and
count_tokens' `original_input_tokens`."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import SCRIPTED_MODEL
from tests.server.test_streaming import parse_sse
from tests.server.test_validation import assert_error

BETA = {"anthropic-beta": "context-management-2025-06-27"}
TOOLS = [{"name": "grep", "input_schema": {"type": "object"}}]


def conversation(calls: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "find it"}]
    for i in range(calls):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": f"toolu_{i}", "name": "grep", "input": {"q": "x"}}
                ],
            }
        )
        result = {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "hit " * 50}
        messages.append({"role": "user", "content": [result]})
    messages[-1]["content"].append({"type": "text", "text": "say: done"})
    return messages


EDIT = {
    "type": "clear_tool_uses_20250919",
    "trigger": {"type": "input_tokens", "value": 100},
    "keep": {"type": "tool_uses", "value": 1},
}


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 32,
        "tools": TOOLS,
        "messages": conversation(4),
        "context_management": {"edits": [EDIT]},
        **overrides,
    }


async def test_edits_shrink_the_prompt_and_are_reported(client: httpx.AsyncClient) -> None:
    plain = {k: v for k, v in body().items() if k != "context_management"}
    before = (await client.post("/v1/messages", json=plain)).json()["usage"]["input_tokens"]
    response = await client.post("/v1/messages", json=body(), headers=BETA)
    assert response.status_code == 200, response.text
    message = response.json()
    after = message["usage"]["input_tokens"]
    assert after < before
    assert message["context_management"] == {
        "applied_edits": [
            {
                "type": "clear_tool_uses_20250919",
                "cleared_tool_uses": 3,
                "cleared_input_tokens": before - after,
            }
        ]
    }


async def test_the_stream_reports_them_in_message_delta(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=body(stream=True), headers=BETA)
    events = parse_sse(response.text)
    start = next(e for e in events if e.name == "message_start")
    assert "context_management" not in start.data["message"]
    delta = next(e for e in events if e.name == "message_delta")
    applied = delta.data["context_management"]["applied_edits"]
    assert applied[0]["cleared_tool_uses"] == 3


async def test_count_tokens_reports_the_original_count(client: httpx.AsyncClient) -> None:
    sent = body()
    del sent["max_tokens"]
    response = await client.post("/v1/messages/count_tokens", json=sent, headers=BETA)
    counted = response.json()
    plain = {k: v for k, v in sent.items() if k != "context_management"}
    original = (await client.post("/v1/messages/count_tokens", json=plain)).json()
    assert counted["context_management"] == {"original_input_tokens": original["input_tokens"]}
    assert counted["input_tokens"] < original["input_tokens"]


async def test_clear_thinking_needs_thinking_on(client: httpx.AsyncClient) -> None:
    sent = body(context_management={"edits": [{"type": "clear_thinking_20251015"}]})
    response = await client.post("/v1/messages", json=sent, headers=BETA)
    assert_error(
        response,
        400,
        "invalid_request_error",
        "`clear_thinking_20251015` strategy requires `thinking` to be enabled",
    )
