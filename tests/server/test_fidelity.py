"""One test per row of docs/fidelity.md: every `/v1/messages` body field (both API
versions), the count_tokens and batch bodies, and `anthropic-beta` values, over raw
HTTP. A row is honoured (its effect is checked), refused (the exact 400), or a
documented no-op (a 200, with the reason in the table)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from parley.services import Services
from tests.conftest import SCRIPTED_MODEL, asgi_client
from tests.server.test_validation import assert_error

OLD, NEW = "2023-06-01", "2026-10-21"
M = SCRIPTED_MODEL


def base(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": M,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "say: fine"}],
    }
    body.update(overrides)
    return body


Check = Callable[[dict[str, Any]], None]


def text_is(expected: str) -> Check:
    def check(message: dict[str, Any]) -> None:
        assert [b["text"] for b in message["content"] if b["type"] == "text"] == [expected]

    return check


def has(key: str, value: Any) -> Check:
    def check(message: dict[str, Any]) -> None:
        assert message[key] == value

    return check


def usage_is(key: str, value: Any) -> Check:
    def check(message: dict[str, Any]) -> None:
        assert message["usage"][key] == value

    return check


@dataclass
class Row:
    field: str
    body: dict[str, Any]
    status: int = 200
    message: str | None = None  # the 400's wording
    check: Check | None = None  # what a 200 must show
    betas: str | None = None
    versions: tuple[str, ...] = (OLD, NEW)
    extra: dict[str, Any] = field(default_factory=dict)


SERVER_TOOL = {"type": "web_search_20250305", "name": "web_search"}
FORMAT = {
    "type": "json_schema",
    "schema": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    },
}

ROWS: list[Row] = [
    Row("model", base(), check=has("model", M)),
    Row("model (unknown)", base(model="nope"), 404, "model: nope"),
    Row("messages", base(), check=text_is("fine")),
    Row(
        "max_tokens",
        base(max_tokens=1, messages=[{"role": "user", "content": "say: a b c"}]),
        check=has("stop_reason", "max_tokens"),
    ),
    Row("system", base(system="be brief"), check=text_is("fine")),
    Row("metadata.user_id", base(metadata={"user_id": "u-1"}), check=text_is("fine")),
    Row(
        "stop_sequences",
        base(messages=[{"role": "user", "content": "say: a b c"}], stop_sequences=["b"]),
        check=has("stop_sequence", "b"),
    ),
    Row("stream", base(stream=False), check=has("type", "message")),
    Row("temperature", base(temperature=0.5), check=text_is("fine"), versions=(OLD,)),
    Row("top_p", base(top_p=0.9), check=text_is("fine"), versions=(OLD,)),
    Row("top_k", base(top_k=5), check=text_is("fine"), versions=(OLD,)),
    Row(
        "temperature (2026-10-21)",
        base(temperature=1.0),
        400,
        "temperature: Extra inputs are not permitted",
        versions=(NEW,),
    ),
    Row(
        "tools (custom)",
        base(
            messages=[{"role": "user", "content": "tool: ping {}"}],
            tools=[{"name": "ping", "input_schema": {"type": "object"}}],
        ),
        check=has("stop_reason", "tool_use"),
    ),
    Row(
        "tools (server tool)",
        base(tools=[SERVER_TOOL]),
        400,
        f"tools.0: tool type 'web_search_20250305' is not supported by model {M}",
    ),
    Row(
        "tool_choice",
        base(
            tools=[{"name": "ping", "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": "ping"},
        ),
        check=has("stop_reason", "tool_use"),
    ),
    Row(
        "thinking (enabled, model cannot think)",
        base(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}),
        400,
        '"thinking.type.enabled" is not supported for this model. Use '
        '"thinking.type.adaptive" and "output_config.effort" to control thinking behavior.',
    ),
    Row("thinking (adaptive)", base(thinking={"type": "adaptive"}), check=text_is("fine")),
    Row("thinking (disabled)", base(thinking={"type": "disabled"}), check=text_is("fine")),
    Row(
        "thinking (between_tools)",
        base(thinking={"type": "between_tools"}),
        check=text_is("fine"),
    ),
    Row(
        "output_config.format",
        base(output_config={"format": FORMAT}),
        check=text_is('{"ok": false}'),
    ),
    Row("output_config.effort", base(output_config={"effort": "low"}), check=text_is("fine")),
    Row(
        "output_config.effort (above high, thinking off)",
        base(output_config={"effort": "max"}),
        400,
        "output_config.effort 'max' is not supported when thinking is disabled on this model. "
        "Use effort 'high' or below, or enable thinking.",
    ),
    Row(
        "output_config.task_budget",
        base(output_config={"task_budget": {"type": "tokens", "total": 1000}}),
        400,
        f"output_config.task_budget: task budgets are not supported for model {M}.",
    ),
    Row(
        "service_tier",
        base(service_tier="standard_only"),
        check=usage_is("service_tier", "standard"),
    ),
    Row(
        "cache_control (top level)",
        base(cache_control={"type": "ephemeral"}),
        check=usage_is("cache_read_input_tokens", 0),
    ),
    Row(
        "container",
        base(container="container_011"),
        400,
        f"container: model {M} does not support containers.",
    ),
    Row("inference_geo (global)", base(inference_geo="global"), check=text_is("fine")),
    Row(
        "inference_geo (a region)",
        base(inference_geo="us"),
        400,
        f"inference_geo: 'us' is not available for model {M}; only 'global' is.",
    ),
    Row("speed (standard)", base(speed="standard"), check=text_is("fine")),
    Row(
        "speed (fast)",
        base(speed="fast"),
        400,
        f"speed: fast mode is not supported for model {M}.",
    ),
    Row(
        "diagnostics",
        base(diagnostics={"previous_message_id": "msg_01"}),
        check=has("diagnostics", {"cache_miss_reason": {"type": "unavailable"}}),
    ),
    Row(
        "thread (without its beta)",
        base(thread={"type": "create"}),
        400,
        "thread: Extra inputs are not permitted",
    ),
    Row(
        "context_management (without its beta)",
        base(context_management={"edits": []}),
        400,
        "context_management: Extra inputs are not permitted",
    ),
    Row(
        "context_management",
        base(
            thinking={"type": "adaptive"},
            context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        ),
        check=has(
            "context_management",
            {
                "applied_edits": [
                    {
                        "type": "clear_thinking_20251015",
                        "cleared_thinking_turns": 0,
                        "cleared_input_tokens": 0,
                    }
                ]
            },
        ),
        betas="context-management-2025-06-27",
    ),
    Row(
        "mcp_servers",
        base(mcp_servers=[{"type": "url", "url": "https://mcp.example", "name": "x"}]),
        400,
        f"mcp_servers: model {M} does not support MCP servers.",
        betas="mcp-client-2025-11-20",
    ),
    Row(
        "output_format (beta)",
        base(output_format=FORMAT),
        check=text_is('{"ok": false}'),
        betas="structured-outputs-2025-11-13",
    ),
    Row(
        "fallbacks (default)",
        base(fallbacks="default"),
        check=text_is("fine"),
        betas="server-side-fallback-2026-07-01",
    ),
    Row(
        "fallbacks (a list)",
        base(fallbacks=[{"model": "other"}]),
        400,
        f"fallbacks: model {M} does not support fallbacks.",
        betas="server-side-fallback-2026-07-01",
    ),
    Row(
        "fallback_credit_token",
        base(fallback_credit_token="fct_1"),
        400,
        "fallback_credit_token: the token does not match a refusal of this organization.",
        betas="fallback-credit-2026-07-01",
    ),
    Row(
        "billing_policy (self)",
        base(billing_policy={"type": "billing_policy", "bill_to": "self"}),
        check=text_is("fine"),
        betas="user-profiles-billing-2026-10-01",
    ),
    Row(
        "billing_policy (user_profile)",
        base(billing_policy={"type": "billing_policy", "bill_to": "user_profile"}),
        400,
        "billing_policy: the user profile has no linked organization that allows your "
        "organization to bill it.",
        betas="user-profiles-billing-2026-10-01",
    ),
    Row(
        "compaction",
        base(compaction={"type": "compact"}),
        400,
        f"compaction: model {M} does not support compaction.",
        betas="compact-2026-01-12",
    ),
    Row("an unknown field", base(frobnicate=1), 400, "frobnicate: Extra inputs are not permitted"),
]

CASES = [(row, v) for row in ROWS for v in row.versions]


def headers(api_key: str, version: str, betas: str | None) -> dict[str, str]:
    sent = {"authorization": f"Bearer {api_key}", "anthropic-version": version}
    if betas:
        sent["anthropic-beta"] = betas
    return sent


@pytest.mark.parametrize(("row", "version"), CASES, ids=[f"{row.field} [{v}]" for row, v in CASES])
async def test_message_field(services: Services, api_key: str, row: Row, version: str) -> None:
    async with asgi_client(services, headers(api_key, version, row.betas)) as http:
        response = await http.post("/v1/messages", json=row.body)
    if row.status != 200:
        kind = "not_found_error" if row.status == 404 else "invalid_request_error"
        assert_error(response, row.status, kind, row.message or "")
        return
    assert response.status_code == 200, response.text
    assert row.check is not None
    row.check(response.json())


COUNT_ROWS: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("prompt fields", {"system": "s", "thinking": {"type": "disabled"}}, 200, None),
    ("output_config.format", {"output_config": {"format": FORMAT}}, 200, None),
    ("max_tokens", {"max_tokens": 5}, 400, "max_tokens: Extra inputs are not permitted"),
    ("stream", {"stream": True}, 400, "stream: Extra inputs are not permitted"),
    ("metadata", {"metadata": {}}, 400, "metadata: Extra inputs are not permitted"),
    ("diagnostics", {"diagnostics": {}}, 400, "diagnostics: Extra inputs are not permitted"),
    ("speed (fast)", {"speed": "fast"}, 400, f"speed: fast mode is not supported for model {M}."),
]


@pytest.mark.parametrize(
    ("name", "extra", "status", "message"), COUNT_ROWS, ids=[r[0] for r in COUNT_ROWS]
)
async def test_count_tokens_field(
    services: Services, api_key: str, name: str, extra: dict[str, Any], status: int, message: str
) -> None:
    sent = {"model": M, "messages": [{"role": "user", "content": "hi"}], **extra}
    async with asgi_client(services, headers(api_key, OLD, None)) as http:
        response = await http.post("/v1/messages/count_tokens", json=sent)
    if status == 200:
        assert response.status_code == 200, response.text
        assert response.json()["input_tokens"] > 0
    else:
        assert_error(response, status, "invalid_request_error", message or "")


async def test_count_tokens_ignores_compaction_as_documented(
    services: Services, api_key: str
) -> None:
    sent = {"model": M, "messages": [{"role": "user", "content": "hi"}]}
    async with asgi_client(services, headers(api_key, OLD, "compact-2026-01-12")) as http:
        plain = await http.post("/v1/messages/count_tokens", json=sent)
        compacted = await http.post(
            "/v1/messages/count_tokens", json={**sent, "compaction": {"type": "compact"}}
        )
    assert compacted.status_code == 200, compacted.text
    assert compacted.json() == plain.json()


async def test_batch_params_follow_the_same_table(services: Services, api_key: str) -> None:
    requests = [
        {"custom_id": "ok", "params": base(output_config={"format": FORMAT})},
        {"custom_id": "geo", "params": base(inference_geo="us")},
    ]
    async with asgi_client(services, headers(api_key, OLD, None)) as http:
        created = (await http.post("/v1/messages/batches", json={"requests": requests})).json()
        for _ in range(200):
            batch = (await http.get(f"/v1/messages/batches/{created['id']}")).json()
            if batch["processing_status"] == "ended":
                break
            await asyncio.sleep(0.05)
        lines = (await http.get(f"/v1/messages/batches/{created['id']}/results")).text
    results = {r["custom_id"]: r["result"] for r in map(json.loads, lines.splitlines())}
    assert results["ok"]["message"]["content"][0]["text"] == '{"ok": false}'
    assert results["geo"]["error"]["error"] == {
        "type": "invalid_request_error",
        "message": f"inference_geo: 'us' is not available for model {M}; only 'global' is.",
    }


SDK_BETAS = [
    "token-counting-2024-11-01",
    "prompt-caching-2024-07-31",
    "message-batches-2024-09-24",
    "message-threads-2026-08-12",
    "files-api-2025-04-14",
    "interleaved-thinking-2025-05-14",
    "claude-code-20250219,effort-2025-11-24,context-management-2025-06-27",
]


@pytest.mark.parametrize("value", SDK_BETAS)
async def test_beta_values_the_clients_send_are_accepted(
    services: Services, api_key: str, value: str
) -> None:
    async with asgi_client(services, headers(api_key, NEW, value)) as http:
        response = await http.post("/v1/messages", json=base())
        models = await http.get("/v1/models")
    assert response.status_code == 200, response.text
    assert models.status_code == 200, models.text


async def test_repeated_beta_headers_are_read_together(services: Services, api_key: str) -> None:
    sent = [
        ("authorization", f"Bearer {api_key}"),
        ("anthropic-version", NEW),
        ("anthropic-beta", "token-counting-2024-11-01"),
        ("anthropic-beta", "context-management-2025-06-27"),
    ]
    async with asgi_client(services) as http:
        response = await http.post(
            "/v1/messages", json=base(context_management={"edits": []}), headers=sent
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens", "/v1/models"])
async def test_an_unknown_beta_value_is_the_api_400(
    services: Services, api_key: str, path: str
) -> None:
    betas = "prompt-caching-2024-07-31, frobnicate-2099-01-01"
    async with asgi_client(services, headers(api_key, OLD, betas)) as http:
        if path == "/v1/models":
            response = await http.get(path)
        else:
            response = await http.post(path, json=base())
    assert_error(
        response,
        400,
        "invalid_request_error",
        "Unexpected value(s) `frobnicate-2099-01-01` for the `anthropic-beta` header. Please "
        "consult our documentation at platform.claude.com/docs or try again without the header.",
    )


async def test_models_report_what_the_table_says(client: httpx.AsyncClient) -> None:
    caps = (await client.get(f"/v1/models/{M}")).json()["capabilities"]
    assert caps["structured_outputs"] == {"supported": True}
    assert caps["thinking"]["supported"] is False
    assert caps["thinking"]["types"] == {
        "adaptive": {"supported": True},
        "enabled": {"supported": False},
        "between_tools": {"supported": True},
        "disabled": {"supported": True},
    }
    assert caps["effort"]["supported"] is True
    assert caps["effort"]["max"] == {"supported": False}
    assert caps["context_management"]["clear_tool_uses_20250919"] == {"supported": True}
    assert caps["context_management"]["compact_20260112"] == {"supported": False}
    assert caps["server_tools"]["supported"] is False
