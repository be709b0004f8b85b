"""Extended thinking over raw HTTP on the scripted engine (`think:` directive): blocks,
stream events, signatures checked when sent back, and the API's rules and 400s."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import ModelConfig, Settings
from parley.services import Services
from tests.conftest import running_app, scripted_settings
from tests.server.test_streaming import parse_sse
from tests.server.test_validation import assert_error

THINKER = "thinker"


def thinking_settings(data_dir: Path, **overrides: Any) -> Settings:
    models = [
        ModelConfig(id=THINKER, engine="scripted", thinking=True, max_output_tokens=4096),
        ModelConfig(id="plain", engine="scripted", max_output_tokens=4096),
    ]
    return scripted_settings(data_dir, models=models, **overrides)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    async with running_app(thinking_settings(tmp_path / "data")) as pair:
        yield pair


@pytest.fixture
def http(app: tuple[Services, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app[1]


ENABLED = {"type": "enabled", "budget_tokens": 1024}


def body(prompt: Any, **overrides: Any) -> dict[str, Any]:
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return {"model": THINKER, "max_tokens": 2048, "messages": messages, "thinking": ENABLED} | (
        overrides
    )


async def test_thinking_comes_first_with_a_signature(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages", json=body("think: two plus two\nsay: four"))
    assert response.status_code == 200, response.text
    thinking, text = response.json()["content"]
    assert thinking["type"] == "thinking"
    assert thinking["thinking"] == "two plus two"
    assert thinking["signature"]
    assert text == {"type": "text", "text": "four"}


async def test_the_stream_has_thinking_and_signature_deltas(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages", json=body("think: a b\nsay: done", stream=True))
    events = parse_sse(response.text)
    names = [e.name for e in events if e.name != "ping"]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = next(e for e in events if e.name == "content_block_start")
    assert start.data["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [e.data["delta"] for e in events if e.name == "content_block_delta"]
    assert [d["type"] for d in deltas] == [
        "thinking_delta",
        "thinking_delta",
        "signature_delta",
        "text_delta",
    ]
    assert "".join(d.get("thinking", "") for d in deltas) == "a b"
    plain = (await http.post("/v1/messages", json=body("think: a b\nsay: done"))).json()
    assert deltas[2]["signature"] == plain["content"][0]["signature"]


async def test_a_block_sent_back_unchanged_is_accepted(http: httpx.AsyncClient) -> None:
    first = (await http.post("/v1/messages", json=body("think: hmm\nsay: yes"))).json()
    history = [
        {"role": "user", "content": "think: hmm\nsay: yes"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "say: again"},
    ]
    response = await http.post("/v1/messages", json=body(history))
    assert response.status_code == 200, response.text


async def test_a_tampered_block_is_the_api_400(http: httpx.AsyncClient) -> None:
    first = (await http.post("/v1/messages", json=body("think: hmm\nsay: yes"))).json()
    block = dict(first["content"][0], thinking="something else")
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [block, first["content"][1]]},
        {"role": "user", "content": "say: again"},
    ]
    response = await http.post("/v1/messages", json=body(history))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.1.content.0: Invalid `signature` in `thinking` block",
    )


async def test_redacted_thinking_sent_back_is_accepted(http: httpx.AsyncClient) -> None:
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"},
                {"type": "text", "text": "ok"},
            ],
        },
        {"role": "user", "content": "say: again"},
    ]
    response = await http.post("/v1/messages", json=body(history))
    assert response.status_code == 200, response.text


async def test_budget_rules(http: httpx.AsyncClient) -> None:
    too_big = await http.post("/v1/messages", json=body("x", max_tokens=1024))
    assert_error(
        too_big,
        400,
        "invalid_request_error",
        "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
        "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
        "#max-tokens-and-context-window-size",
    )
    too_small = await http.post(
        "/v1/messages", json=body("x", thinking={"type": "enabled", "budget_tokens": 1000})
    )
    assert_error(
        too_small,
        400,
        "invalid_request_error",
        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
    )


async def test_thinking_stops_at_the_budget(http: httpx.AsyncClient) -> None:
    words = " ".join(f"w{i}" for i in range(1100))
    response = await http.post("/v1/messages", json=body(f"think: {words}\nsay: ok"))
    thinking = response.json()["content"][0]["thinking"]
    assert len(thinking.split()) == 1024


async def test_a_tool_loop_needs_the_last_thinking_block(http: httpx.AsyncClient) -> None:
    tools = [{"name": "clock", "input_schema": {"type": "object"}}]
    call = {"type": "tool_use", "id": "toolu_01", "name": "clock", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "noon"}
    history = [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    response = await http.post("/v1/messages", json=body(history, tools=tools))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with a "
        "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
        "We recommend you include thinking blocks from previous turns. To avoid this "
        "requirement, disable `thinking`. Please consult our documentation at "
        "https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
    )
    first = (
        await http.post(
            "/v1/messages", json=body("think: I need the clock\ntool: clock {}", tools=tools)
        )
    ).json()
    assert [b["type"] for b in first["content"]] == ["thinking", "tool_use"]
    history[1] = {"role": "assistant", "content": first["content"]}
    result["tool_use_id"] = first["content"][1]["id"]
    ok = await http.post("/v1/messages", json=body(history, tools=tools))
    assert ok.status_code == 200, ok.text


async def test_thinking_off_refuses_thinking_in_a_final_assistant_turn(
    http: httpx.AsyncClient,
) -> None:
    first = (await http.post("/v1/messages", json=body("think: x\nsay: y"))).json()
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [first["content"][0]]},
    ]
    response = await http.post("/v1/messages", json=body(history, thinking={"type": "disabled"}))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.1.content.0: When thinking is disabled, an `assistant` message in the final "
        "position cannot contain `thinking`. To use thinking blocks, enable `thinking` in your "
        "request.",
    )


async def test_adaptive_thinks_on_a_model_that_can(http: httpx.AsyncClient) -> None:
    sent = body("think: maybe\nsay: ok", thinking={"type": "adaptive"})
    content = (await http.post("/v1/messages", json=sent)).json()["content"]
    assert [b["type"] for b in content] == ["thinking", "text"]
    plain = (await http.post("/v1/messages", json={**sent, "model": "plain"})).json()
    assert [b["type"] for b in plain["content"]] == ["text"]


async def test_display_omitted_returns_only_a_signature(http: httpx.AsyncClient) -> None:
    sent = body("think: secret\nsay: ok", thinking={**ENABLED, "display": "omitted"})
    first = (await http.post("/v1/messages", json=sent)).json()
    block = first["content"][0]
    assert block["thinking"] == ""
    assert block["signature"]
    history = [
        {"role": "user", "content": "think: secret\nsay: ok"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "say: more"},
    ]
    assert (await http.post("/v1/messages", json=body(history))).status_code == 200


async def test_models_report_thinking_per_model(http: httpx.AsyncClient) -> None:
    thinker = (await http.get(f"/v1/models/{THINKER}")).json()["capabilities"]
    plain = (await http.get("/v1/models/plain")).json()["capabilities"]
    assert thinker["thinking"]["supported"] is True
    assert thinker["thinking"]["types"]["enabled"] == {"supported": True}
    assert thinker["effort"]["max"] == {"supported": True}
    assert plain["thinking"]["supported"] is False
    assert plain["thinking"]["types"]["enabled"] == {"supported": False}


async def test_the_key_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_app(thinking_settings(data)) as (_, http):
        signed = (await http.post("/v1/messages", json=body("think: z\nsay: y"))).json()
    key_file = data / "thinking-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": signed["content"]},
        {"role": "user", "content": "say: again"},
    ]
    # A restart keeps the key, so earlier blocks still verify.
    async with running_app(thinking_settings(data)) as (_, http):
        assert (await http.post("/v1/messages", json=body(history))).status_code == 200
    # Another server with its own key does not accept them.
    async with running_app(thinking_settings(tmp_path / "other")) as (_, http):
        refused = await http.post("/v1/messages", json=body(history))
        assert refused.status_code == 400


async def test_replicas_share_a_configured_key(tmp_path: Path) -> None:
    key = "a-shared-secret-for-thinking"
    async with running_app(thinking_settings(tmp_path / "a", thinking_key=key)) as (_, http):
        signed = (await http.post("/v1/messages", json=body("think: z\nsay: y"))).json()
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": signed["content"]},
        {"role": "user", "content": "say: again"},
    ]
    async with running_app(thinking_settings(tmp_path / "b", thinking_key=key)) as (_, http):
        assert (await http.post("/v1/messages", json=body(history))).status_code == 200
