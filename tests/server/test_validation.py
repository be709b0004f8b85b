"""Request body validation, with the real API's wording (api-spec §5.1, §5.2, §12;
api-version §19.4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from parley.services import Services
from tests.conftest import SCRIPTED_MODEL, asgi_client


def params(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "say: ok"}],
    }
    body.update(overrides)
    return body


def assert_error(response: httpx.Response, status: int, error_type: str, message: str) -> None:
    """The envelope of api-spec §12, with the request id echoed in the header."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": response.headers["request-id"],
    }
    assert body["request_id"].startswith("req_")


async def post(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return await client.post("/v1/messages", json=body, **kwargs)


def without(key: str) -> dict[str, Any]:
    body = params()
    del body[key]
    return body


def messages(*content: Any) -> list[dict[str, Any]]:
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": c} for i, c in enumerate(content)]


INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing max_tokens", without("max_tokens"), "max_tokens: Field required"),
    ("missing model", without("model"), "model: Field required"),
    ("missing messages", without("messages"), "messages: Field required"),
    (
        "extra top-level field",
        params(frobnicate=True),
        "frobnicate: Extra inputs are not permitted",
    ),
    (
        "extra field in a content block",
        params(messages=[{"role": "user", "content": [{"type": "text", "text": "x", "foo": 1}]}]),
        # The discriminator tag sits inside the path, as in `tools.0.custom.name` (§5.1).
        "messages.0.content.0.text.foo: Extra inputs are not permitted",
    ),
    (
        "extra field in a message",
        params(messages=[{"role": "user", "content": "x", "name": "bob"}]),
        "messages.0.name: Extra inputs are not permitted",
    ),
    (
        "extra field in metadata",
        params(metadata={"user_id": "u-1", "email": "a@b.c"}),
        "metadata.email: Extra inputs are not permitted",
    ),
    (
        "extra field in a system block",
        params(system=[{"type": "text", "text": "x", "bar": 1}]),
        "system.0.bar: Extra inputs are not permitted",
    ),
    (
        "missing field in a content block",
        params(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        "messages.0.content.0.text.text: Field required",
    ),
    ("model of the wrong type", params(model=5), "model: Input should be a valid string"),
    (
        "max_tokens of the wrong type",
        params(max_tokens="lots"),
        "max_tokens: Input should be a valid integer, unable to parse string as an integer",
    ),
    ("messages of the wrong type", params(messages="hi"), "messages: Input should be a valid list"),
    (
        "negative max_tokens",
        params(max_tokens=-1),
        "max_tokens: Input should be greater than or equal to 0",
    ),
    (
        "temperature above 1",
        params(temperature=1.5),
        "temperature: Input should be less than or equal to 1",
    ),
    (
        "unknown role",
        params(messages=[{"role": "bot", "content": "x"}]),
        "messages.0.role: Input should be 'user', 'assistant' or 'system'",
    ),
    ("no messages", params(messages=[]), "messages: at least one message is required"),
    (
        "assistant first",
        params(messages=[{"role": "assistant", "content": "hi"}]),
        'messages: first message must use the "user" role',
    ),
    (
        "empty text block",
        params(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
        "messages: text content blocks must be non-empty",
    ),
    (
        "empty text block in a later turn",
        params(messages=messages("hi", [{"type": "text", "text": ""}], "again")),
        "messages: text content blocks must be non-empty",
    ),
    (
        "empty string content",
        params(messages=[{"role": "user", "content": ""}]),
        "messages.0: all messages must have non-empty content except for the optional "
        "final assistant message",
    ),
    (
        "empty assistant turn before the last",
        params(messages=messages("hi", "", "again")),
        "messages.1: all messages must have non-empty content except for the optional "
        "final assistant message",
    ),
    (
        "empty content list",
        params(messages=[{"role": "user", "content": []}]),
        "messages.0: all messages must have non-empty content except for the optional "
        "final assistant message",
    ),
    (
        "prefill with trailing whitespace",
        params(messages=messages("hi", "The answer is ")),
        "messages: final assistant content cannot end with trailing whitespace",
    ),
    (
        "prefill with a trailing newline",
        params(messages=messages("hi", "Sure:\n")),
        "messages: final assistant content cannot end with trailing whitespace",
    ),
    (
        "max_tokens above the model cap",
        params(max_tokens=5000),
        "max_tokens: 5000 > 1024, which is the maximum allowed number of output tokens "
        "for scripted-1",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [pytest.param(body, message, id=name) for name, body, message in INVALID_BODIES],
)
async def test_invalid_body(client: httpx.AsyncClient, body: dict[str, Any], message: str) -> None:
    assert_error(await post(client, body), 400, "invalid_request_error", message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            params(temperature=1.5), "temperature: Input should be less than or equal to 1"
        ),
        pytest.param(params(messages=[]), "messages: at least one message is required"),
    ],
)
async def test_invalid_body_when_streaming_is_a_plain_error(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    # Errors found before streaming starts are ordinary HTTP errors (api-spec §6.4).
    assert_error(
        await post(client, {**body, "stream": True}), 400, "invalid_request_error", message
    )


async def test_boundary_values_are_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, params(max_tokens=1024, temperature=1.0, top_p=0.0, top_k=0))
    assert response.status_code == 200, response.text
    response = await post(client, params(temperature=0.0))
    assert response.status_code == 200, response.text


async def input_tokens(client: httpx.AsyncClient, prompt: str) -> int:
    response = await client.post(
        "/v1/messages/count_tokens",
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": prompt}]},
    )
    assert response.status_code == 200, response.text
    count: int = response.json()["input_tokens"]
    return count


async def test_input_plus_max_tokens_over_the_context(client: httpx.AsyncClient) -> None:
    prompt = "say: ok\n" + " ".join(["word"] * 1500)
    n = await input_tokens(client, prompt)
    assert 1024 < n < 2048
    response = await post(
        client, params(max_tokens=1000, messages=[{"role": "user", "content": prompt}])
    )
    assert_error(
        response,
        400,
        "invalid_request_error",
        f"input length and `max_tokens` exceed context limit: {n} + 1000 > 2048, "
        "decrease input length or `max_tokens` and try again",
    )


async def test_input_plus_max_tokens_exactly_at_the_context(client: httpx.AsyncClient) -> None:
    prompt = "say: ok\n" + " ".join(["word"] * 1500)
    n = await input_tokens(client, prompt)
    body = params(max_tokens=2048 - n, messages=[{"role": "user", "content": prompt}])
    response = await post(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "ok"}]


async def test_prompt_longer_than_the_context(client: httpx.AsyncClient) -> None:
    prompt = " ".join(["word"] * 2100)
    n = await input_tokens(client, prompt)
    assert n > 2048
    response = await post(
        client, params(max_tokens=1, messages=[{"role": "user", "content": prompt}])
    )
    assert_error(
        response, 400, "invalid_request_error", f"prompt is too long: {n} tokens > 2048 maximum"
    )


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"model": "scripted-1",', b"\xff\xfe", b"[1, 2"], ids=repr
)
async def test_malformed_json(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/v1/messages", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null"])
async def test_json_that_is_not_an_object(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/v1/messages", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, params(model="nope")), 404, "not_found_error", "model: nope")


async def test_unknown_model_on_count_tokens(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages/count_tokens",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert_error(response, 404, "not_found_error", "model: nope")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing"),
        ("POST", "/v1/complete-ish"),
        ("POST", "/v1/messages/nothing"),
        ("GET", "/v2/messages"),
    ],
)
async def test_unknown_path(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert_error(response, 404, "not_found_error", "Not found")


async def test_request_ids_differ_between_requests(client: httpx.AsyncClient) -> None:
    first = await post(client, params(messages=[]))
    second = await post(client, params(messages=[]))
    assert first.json()["request_id"] != second.json()["request_id"]


# api-version §19.4: under 2026-10-21 the sampling fields are gone; any presence is a 400.
SAMPLING = [
    pytest.param("temperature", 1.0, id="temperature-1.0"),
    pytest.param("temperature", 0.2, id="temperature-0.2"),
    pytest.param("temperature", None, id="temperature-null"),
    pytest.param("top_p", 0.9, id="top_p"),
    pytest.param("top_k", 5, id="top_k"),
]

V2026 = {"anthropic-version": "2026-10-21"}


@pytest.mark.parametrize(("field", "value"), SAMPLING)
async def test_sampling_fields_refused_under_2026(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await post(client, params(**{field: value}), headers=V2026)
    assert_error(response, 400, "invalid_request_error", f"{field}: Extra inputs are not permitted")


@pytest.fixture
async def new_sdk_client(services: Services, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated like the 2.x SDKs: Bearer only, version 2026-10-21 (api-version §19.3)."""
    async with asgi_client(services, {"authorization": f"Bearer {api_key}", **V2026}) as http:
        yield http


@pytest.mark.parametrize(("field", "value"), SAMPLING)
async def test_sampling_fields_refused_under_2026_with_bearer(
    new_sdk_client: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await post(new_sdk_client, params(stream=True, **{field: value}))
    assert_error(response, 400, "invalid_request_error", f"{field}: Extra inputs are not permitted")


@pytest.mark.parametrize(("field", "value"), SAMPLING)
async def test_sampling_fields_accepted_under_2023(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await post(client, params(**{field: value}))
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "ok"}]


async def test_2026_accepts_a_body_without_sampling_fields(
    new_sdk_client: httpx.AsyncClient,
) -> None:
    response = await post(new_sdk_client, params())
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "ok"}]


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21"])
async def test_count_tokens_refuses_sampling_fields(
    client: httpx.AsyncClient, version: str
) -> None:
    response = await client.post(
        "/v1/messages/count_tokens",
        json={
            "model": SCRIPTED_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 1.0,
        },
        headers={"anthropic-version": version},
    )
    assert_error(
        response, 400, "invalid_request_error", "temperature: Extra inputs are not permitted"
    )


async def test_count_tokens_refuses_max_tokens(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages/count_tokens",
        json={
            "model": SCRIPTED_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
        },
    )
    assert_error(
        response, 400, "invalid_request_error", "max_tokens: Extra inputs are not permitted"
    )


async def test_count_tokens_applies_message_rules(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages/count_tokens",
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "assistant", "content": "hi"}]},
    )
    assert_error(
        response, 400, "invalid_request_error", 'messages: first message must use the "user" role'
    )
