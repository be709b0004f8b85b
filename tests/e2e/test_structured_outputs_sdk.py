"""Structured outputs end to end: the SDKs' own `messages.parse` helpers (Python 2.14
with a pydantic model, plain and streamed; TypeScript 1.14 with
`jsonSchemaOutputFormat`) against a real server, and the embedded model's replies
validated with `jsonschema` over several schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx
import jsonschema
import pytest
from pydantic import BaseModel

from tests.e2e.sse import headers
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).with_name("node")


class Address(BaseModel):
    street: str
    city: str


class Review(BaseModel):
    stars: Literal[1, 2, 3, 4, 5]
    verdict: Literal["good", "bad"]
    summary: str


class Person(BaseModel):
    name: str
    age: int
    role: Literal["admin", "user", "guest"]
    address: Address
    nicknames: list[str]


@pytest.fixture(scope="module")
def sdk(scripted_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:
        yield client


ADA = {
    "name": "Ada",
    "age": 36,
    "role": "admin",
    "address": {"street": "1 Main St", "city": "London"},
    "nicknames": ["countess"],
}


def test_parse_with_a_pydantic_model(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.parse(
        model="scripted-1",
        max_tokens=200,
        messages=[{"role": "user", "content": f"say: {json.dumps(ADA)}"}],
        output_format=Person,
    )
    assert message.parsed_output == Person.model_validate(ADA)
    assert message.stop_reason == "end_turn"


def test_streamed_parse_with_a_pydantic_model(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="scripted-1",
        max_tokens=200,
        messages=[{"role": "user", "content": "anything that is not JSON"}],
        output_format=Person,
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert isinstance(final.parsed_output, Person)
    # The scripted engine's smallest valid value, streamed as ordinary text deltas.
    assert json.loads("".join(texts)) == final.parsed_output.model_dump()


def test_the_sdk_sees_the_api_400_for_an_unsupported_keyword(sdk: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(
            model="scripted-1",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            output_config={
                "format": {
                    "type": "json_schema",
                    "schema": {**schema, "required": ["n"], "additionalProperties": False},
                }
            },
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["message"] == (
        "output_config.format.schema: For 'integer' type, property 'maximum' is not supported"
    )


def run_node(server: ParleyProcess, prompt: str, model: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [node, "parse.mjs", server.base_url, server.api_key, "@anthropic-ai/sdk", model, prompt],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    return results


CITY = {"city": "Oslo", "population": 709000, "tags": ["fjord"]}


def test_typescript_parse_and_stream(scripted_server: ParleyProcess) -> None:
    results = run_node(scripted_server, f"say: {json.dumps(CITY)}", "scripted-1")
    assert results["parse"] == {"ok": True, "parsed": CITY, "stop": "end_turn"}
    assert results["stream"] == {"ok": True, "parsed": CITY, "stop": "end_turn"}
    assert results["refused"]["status"] == 400
    assert results["refused"]["message"] == (
        "output_config.format.schema: For 'object' type, 'additionalProperties' must be "
        "explicitly set to false"
    )


# --- the embedded model ---------------------------------------------------------------


def closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


# Integer bounds (`minimum`/`maximum`) are outside the API's subset; a bounded integer
# is an integer `enum`, the form the API's guide recommends for small ranges.
MODEL_SCHEMAS: dict[str, dict[str, Any]] = {
    "flat with required fields": closed(
        {"name": {"type": "string"}, "age": {"type": "integer"}, "note": {"type": "string"}},
        required=["name", "age"],
    ),
    "nested objects": closed(
        {"user": closed({"id": {"type": "integer"}, "email": {"type": "string"}})}
    ),
    "arrays of objects": closed(
        {
            "items": {
                "type": "array",
                "minItems": 1,
                "items": closed({"sku": {"type": "string"}, "qty": {"type": "integer"}}),
            }
        }
    ),
    "enums": closed(
        {
            "colour": {"enum": ["red", "green", "blue"]},
            "size": {"type": "string", "enum": ["S", "M", "L"]},
        }
    ),
    "bounded integers and booleans": closed(
        {"rating": {"type": "integer", "enum": [1, 2, 3, 4, 5]}, "ok": {"type": "boolean"}}
    ),
    "nullable, formats and $defs": {
        "$defs": {"When": closed({"date": {"type": "string", "format": "date"}})},
        **closed(
            {
                "when": {"$ref": "#/$defs/When"},
                "comment": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            }
        ),
    },
}


@pytest.mark.model
@pytest.mark.parametrize("name", list(MODEL_SCHEMAS))
def test_embedded_model_replies_validate(model_server: ParleyProcess, name: str) -> None:
    schema = MODEL_SCHEMAS[name]
    body = {
        "model": "smollm2",
        "max_tokens": 600,
        "messages": [{"role": "user", "content": f"Make up an example for: {name}."}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    with httpx.Client(base_url=model_server.base_url, timeout=300) as http:
        response = http.post("/v1/messages", json=body, headers=headers(model_server.api_key))
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["stop_reason"] == "end_turn", message
    jsonschema.validate(json.loads(message["content"][0]["text"]), schema)


@pytest.mark.model
def test_embedded_model_through_the_sdk_parse(model_server: ParleyProcess) -> None:
    with anthropic.Anthropic(
        base_url=model_server.base_url, api_key=model_server.api_key, max_retries=0
    ) as client:
        message = client.messages.parse(
            model="smollm2",
            max_tokens=600,
            messages=[{"role": "user", "content": "Review a film you like."}],
            output_format=Review,
        )
    assert message.stop_reason == "end_turn"
    assert isinstance(message.parsed_output, Review)
