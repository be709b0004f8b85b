"""The official SDKs against the real embedded model (SmolLM2 135M through llama.cpp).

Replies are short (max_tokens <= 8): the model decodes about 100 tokens/s here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.test_python_sdk0 import run_sdk0
from tests.e2e.test_typescript_sdk import check_stream, run_node
from tests.serverproc import ParleyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.model]

MODEL = "smollm2-135m-instruct"
PROMPT = "Write a long story about a dragon who learns to sail."


def user(text: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def sdk(model_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=model_server.base_url, api_key=model_server.api_key, max_retries=0
    ) as client:
        yield client


def test_create_stops_at_max_tokens(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="smollm2", max_tokens=5, messages=user(PROMPT))
    assert message.model in {"smollm2", MODEL}
    assert message.content[0].type == "text"
    assert message.content[0].text.strip()
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert message.usage.input_tokens > 0
    counted = sdk.messages.count_tokens(model=MODEL, messages=user(PROMPT))
    assert counted.input_tokens == message.usage.input_tokens
    assert message._request_id is not None
    assert message._request_id.startswith("req_")


def test_stream_text_matches_final_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=5, messages=user(PROMPT)) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts
    assert final.content[0].type == "text"
    assert "".join(texts) == final.content[0].text
    assert final.content[0].text.strip()
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5
    assert final.usage.input_tokens > 0


def greedy(server: ParleyProcess, prompt: str, max_tokens: int, **extra: object) -> dict[str, Any]:
    """A raw 2023-06-01 request at temperature 0 (the newest SDK refuses temperature)."""
    response = httpx.post(
        f"{server.base_url}/v1/messages",
        headers={"x-api-key": server.api_key, "anthropic-version": "2023-06-01"},
        json={
            "model": MODEL,
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": user(prompt),
            **extra,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_temperature_zero_is_deterministic(model_server: ParleyProcess) -> None:
    first = greedy(model_server, PROMPT, 8)
    second = greedy(model_server, PROMPT, 8)
    assert first["content"][0]["text"].strip()
    assert first["content"] == second["content"]
    assert first["usage"]["output_tokens"] == second["usage"]["output_tokens"] == 8

    # The 0.x Python SDK (temperature is a typed kwarg under 2023-06-01) gets the same reply.
    results = run_sdk0(model_server, MODEL, "--only", "create", "--max-tokens", "8")
    old = results["create"]
    assert old["ok"], old
    reference = greedy(model_server, "say: old client", 8)  # the script's prompt
    assert old["text"] == reference["content"][0]["text"]


def test_short_answer_ends_the_turn(model_server: ParleyProcess) -> None:
    """With room to finish, the model stops by itself: end_turn, fewer tokens than allowed
    (greedy, so the reply is the same every run)."""
    body = greedy(
        model_server,
        "What colour is the sky on a clear day?",
        48,
        system="Answer with one word only.",
    )
    assert body["stop_reason"] == "end_turn", body
    assert 0 < body["usage"]["output_tokens"] < 48
    assert body["content"][0]["text"].strip()


def test_new_sdk_refuses_temperature_on_the_real_model(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs"):
        sdk.messages.create(
            model=MODEL, max_tokens=5, messages=user(PROMPT), extra_body={"temperature": 0}
        )


def test_typescript_sdk_stream_on_the_real_model(model_server: ParleyProcess) -> None:
    results = run_node(model_server, "@anthropic-ai/sdk", "smollm2", "5", PROMPT)
    create = results["create"]
    assert create["ok"], create
    assert create["stopReason"] == "max_tokens"
    assert create["usage"]["output_tokens"] == 5
    stream = results["stream"]
    check_stream(stream, create)
    assert stream["finalText"].strip()
    assert stream["stopReason"] == "max_tokens"
    assert stream["usage"]["output_tokens"] == 5
    assert results["notFound"]["error"]["status"] == 404
