"""Structured outputs over raw HTTP on the scripted engine: `output_config.format`,
the beta's `output_format`, strict tools, and the API's 400s."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest

from parley.config import ModelConfig
from tests.conftest import SCRIPTED_MODEL, running_app, scripted_settings
from tests.server.test_streaming import parse_sse
from tests.server.test_validation import assert_error

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "user"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}


def body(prompt: str, **overrides: Any) -> dict[str, Any]:
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
        "output_config": {"format": {"type": "json_schema", "schema": PERSON}},
        **overrides,
    }


def reply_text(message: dict[str, Any]) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


async def test_a_reply_that_validates_is_returned_as_is(client: httpx.AsyncClient) -> None:
    wanted = {"name": "Ada", "age": 36, "role": "admin"}
    response = await client.post("/v1/messages", json=body(f"say: {json.dumps(wanted)}"))
    assert response.status_code == 200, response.text
    assert json.loads(reply_text(response.json())) == wanted


async def test_other_text_becomes_the_smallest_valid_value(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=body('say: {"name": "Ada", "age": "36"}'))
    assert response.status_code == 200, response.text
    value = json.loads(reply_text(response.json()))
    jsonschema.validate(value, PERSON)
    assert value == {"name": "", "age": 0, "role": "admin"}


async def test_streamed_as_ordinary_text_deltas(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=body("hello", stream=True))
    events = parse_sse(response.text)
    deltas = [e.data["delta"] for e in events if e.name == "content_block_delta"]
    assert deltas
    assert all(d["type"] == "text_delta" for d in deltas)
    jsonschema.validate(json.loads("".join(d["text"] for d in deltas)), PERSON)


async def test_the_beta_spelling_needs_its_header_and_then_works(
    client: httpx.AsyncClient,
) -> None:
    sent = body("hello")
    sent["output_format"] = sent.pop("output_config")["format"]
    refused = await client.post("/v1/messages", json=sent)
    assert_error(
        refused, 400, "invalid_request_error", "output_format: Extra inputs are not permitted"
    )
    beta = {"anthropic-beta": "structured-outputs-2025-11-13"}
    response = await client.post("/v1/messages", json=sent, headers=beta)
    assert response.status_code == 200, response.text
    jsonschema.validate(json.loads(reply_text(response.json())), PERSON)
    both = {**sent, "output_config": body("x")["output_config"]}
    conflict = await client.post("/v1/messages", json=both, headers=beta)
    assert_error(
        conflict,
        400,
        "invalid_request_error",
        "output_format: Both output_format and output_config.format were provided. "
        "Please use only output_config.format (output_format is deprecated).",
    )


async def test_an_unsupported_keyword_is_named_in_the_400(client: httpx.AsyncClient) -> None:
    schema = {
        **PERSON,
        "properties": {**PERSON["properties"], "age": {"type": "integer", "minimum": 0}},
    }
    sent = body("hi", output_config={"format": {"type": "json_schema", "schema": schema}})
    response = await client.post("/v1/messages", json=sent)
    assert_error(
        response,
        400,
        "invalid_request_error",
        "output_config.format.schema: For 'integer' type, property 'minimum' is not supported",
    )


async def test_count_tokens_checks_the_schema_too(client: httpx.AsyncClient) -> None:
    sent = body("hi")
    del sent["max_tokens"]
    ok = await client.post("/v1/messages/count_tokens", json=sent)
    assert ok.status_code == 200, ok.text
    sent["output_config"]["format"]["schema"] = {"type": "object", "properties": {}}
    response = await client.post("/v1/messages/count_tokens", json=sent)
    assert_error(
        response,
        400,
        "invalid_request_error",
        "output_config.format.schema: For 'object' type, 'additionalProperties' must be "
        "explicitly set to false",
    )


STRICT_TOOL = {
    "name": "lookup",
    "strict": True,
    "input_schema": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"],
        "additionalProperties": False,
    },
}


async def test_strict_tool_schemas_are_held_to_the_subset(client: httpx.AsyncClient) -> None:
    loose = {**STRICT_TOOL, "input_schema": {"type": "object", "properties": {}}}
    response = await client.post("/v1/messages", json=body("hi", tools=[loose], output_config=None))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "tools.0.custom.input_schema: For 'object' type, 'additionalProperties' must be "
        "explicitly set to false",
    )
    # The same schema is fine on a tool that is not strict.
    lenient = {k: v for k, v in loose.items() if k != "strict"}
    ok = await client.post("/v1/messages", json=body("hi", tools=[lenient], output_config=None))
    assert ok.status_code == 200, ok.text


async def test_a_strict_call_that_breaks_its_schema_fails_the_message(
    client: httpx.AsyncClient,
) -> None:
    # The scripted engine calls what its directive says; a strict tool's guarantee
    # means such an input never reaches the client with a 200.
    sent = body('tool: lookup {"id": "seven"}', tools=[STRICT_TOOL], output_config=None)
    response = await client.post("/v1/messages", json=sent)
    assert_error(response, 500, "api_error", "Internal server error")
    good = body('tool: lookup {"id": 7}', tools=[STRICT_TOOL], output_config=None)
    ok = await client.post("/v1/messages", json=good)
    assert ok.status_code == 200, ok.text
    assert ok.json()["content"][0]["input"] == {"id": 7}


@pytest.mark.parametrize("field", ["format", "strict"])
async def test_a_model_without_structured_outputs_refuses_them(tmp_path: Any, field: str) -> None:
    model = ModelConfig(id="plain", engine="scripted", structured_outputs=False)
    async with running_app(scripted_settings(tmp_path, models=[model])) as (_, http):
        sent = body("hi", model="plain")
        if field == "strict":
            sent = body("hi", model="plain", tools=[STRICT_TOOL], output_config=None)
        response = await http.post("/v1/messages", json=sent)
        message = (
            "output_config.format: model plain does not support structured outputs."
            if field == "format"
            else "tools.0.custom.strict: model plain does not support strict tool use."
        )
        assert_error(response, 400, "invalid_request_error", message)
        models = (await http.get("/v1/models/plain")).json()
        assert models["capabilities"]["structured_outputs"] == {"supported": False}
