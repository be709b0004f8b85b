"""API keys, Bearer tokens and the anthropic-version header (api-spec §3, §12;
api-version §19.2, §19.3, §19.16)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from parley.services import Services
from tests.conftest import SCRIPTED_MODEL, asgi_client

BODY: dict[str, Any] = {
    "model": SCRIPTED_MODEL,
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "say: authorised"}],
}


@pytest.fixture
async def bare(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no auth or version headers unless a test adds them."""
    async with asgi_client(services) as http:
        yield http


def assert_error(response: httpx.Response, status: int, error_type: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": response.headers["request-id"],
    }


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "authorised"}]


V2023 = {"anthropic-version": "2023-06-01"}
V2026 = {"anthropic-version": "2026-10-21"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/messages", BODY),
        ("POST", "/v1/messages/count_tokens", {"model": SCRIPTED_MODEL, "messages": []}),
        ("GET", "/v1/models", None),
        ("GET", f"/v1/models/{SCRIPTED_MODEL}", None),
    ],
)
async def test_no_key(
    bare: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await bare.request(method, path, json=body, headers=V2023)
    assert_error(response, 401, "authentication_error", "x-api-key header is required")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"x-api-key": "sk-parley-wrong"}, id="x-api-key"),
        pytest.param({"authorization": "Bearer sk-parley-wrong"}, id="bearer"),
    ],
)
async def test_bad_key(bare: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await bare.post("/v1/messages", json=BODY, headers={**headers, **V2023})
    assert_error(response, 401, "authentication_error", "invalid x-api-key")


@pytest.mark.parametrize(
    "authorization",
    ["Basic abc", "Bearer", "Bearer    ", "sk-parley-something"],
)
async def test_authorization_that_is_not_a_bearer_token(
    bare: httpx.AsyncClient, authorization: str
) -> None:
    response = await bare.post(
        "/v1/messages", json=BODY, headers={"authorization": authorization, **V2023}
    )
    assert_error(response, 401, "authentication_error", "x-api-key header is required")


async def test_x_api_key_works(bare: httpx.AsyncClient, api_key: str) -> None:
    assert_ok(await bare.post("/v1/messages", json=BODY, headers={"x-api-key": api_key, **V2023}))


async def test_header_names_are_case_insensitive(bare: httpx.AsyncClient, api_key: str) -> None:
    # The Python SDK spells it `X-Api-Key` (api-spec §2).
    headers = {"X-Api-Key": api_key, "Anthropic-Version": "2023-06-01"}
    assert_ok(await bare.post("/v1/messages", json=BODY, headers=headers))


@pytest.mark.parametrize("version", [V2023, V2026], ids=["2023-06-01", "2026-10-21"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_bearer_works_with_either_version(
    bare: httpx.AsyncClient, api_key: str, version: dict[str, str], scheme: str
) -> None:
    headers = {"authorization": f"{scheme} {api_key}", **version}
    assert_ok(await bare.post("/v1/messages", json=BODY, headers=headers))


async def test_bearer_works_on_every_endpoint(bare: httpx.AsyncClient, api_key: str) -> None:
    headers = {"authorization": f"Bearer {api_key}", **V2026}
    count = await bare.post(
        "/v1/messages/count_tokens",
        json={"model": SCRIPTED_MODEL, "messages": BODY["messages"]},
        headers=headers,
    )
    assert count.status_code == 200, count.text
    listing = await bare.get("/v1/models", headers=headers)
    assert listing.status_code == 200, listing.text
    one = await bare.get(f"/v1/models/{SCRIPTED_MODEL}", headers=headers)
    assert one.status_code == 200, one.text


async def test_x_api_key_wins_over_a_bad_bearer(bare: httpx.AsyncClient, api_key: str) -> None:
    headers = {"x-api-key": api_key, "authorization": "Bearer sk-parley-wrong", **V2026}
    assert_ok(await bare.post("/v1/messages", json=BODY, headers=headers))


async def test_bad_x_api_key_is_not_rescued_by_a_good_bearer(
    bare: httpx.AsyncClient, api_key: str
) -> None:
    headers = {"x-api-key": "sk-parley-wrong", "authorization": f"Bearer {api_key}", **V2026}
    response = await bare.post("/v1/messages", json=BODY, headers=headers)
    assert_error(response, 401, "authentication_error", "invalid x-api-key")


async def test_missing_version(bare: httpx.AsyncClient, api_key: str) -> None:
    response = await bare.post("/v1/messages", json=BODY, headers={"x-api-key": api_key})
    assert_error(response, 400, "invalid_request_error", "anthropic-version: header is required")


async def test_missing_version_on_models(bare: httpx.AsyncClient, api_key: str) -> None:
    response = await bare.get("/v1/models", headers={"x-api-key": api_key})
    assert_error(response, 400, "invalid_request_error", "anthropic-version: header is required")


async def test_empty_version(bare: httpx.AsyncClient, api_key: str) -> None:
    headers = {"x-api-key": api_key, "anthropic-version": ""}
    response = await bare.post("/v1/messages", json=BODY, headers=headers)
    assert_error(response, 400, "invalid_request_error", "anthropic-version: header is required")


@pytest.mark.parametrize(
    "value",
    [
        "2023-10-01",
        "2026-10-22",
        "latest",
        # A duplicated header that a proxy joined with a comma fails the same way (§3).
        "2023-06-01, 2023-06-01",
    ],
)
async def test_invalid_version(bare: httpx.AsyncClient, api_key: str, value: str) -> None:
    headers = {"x-api-key": api_key, "anthropic-version": value}
    response = await bare.post("/v1/messages", json=BODY, headers=headers)
    assert_error(
        response,
        400,
        "invalid_request_error",
        f'anthropic-version: "{value}" is not a valid version',
    )


async def test_repeated_version_header_is_one_joined_value(
    bare: httpx.AsyncClient, api_key: str
) -> None:
    # Two header lines are the same as one comma-joined line (api-spec §3).
    headers = [
        ("x-api-key", api_key),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-version", "2023-06-01"),
    ]
    response = await bare.post("/v1/messages", json=BODY, headers=headers)
    assert_error(
        response,
        400,
        "invalid_request_error",
        'anthropic-version: "2023-06-01, 2023-06-01" is not a valid version',
    )


@pytest.mark.parametrize("value", ["2023-01-01", "2023-06-01", "2026-10-21"])
async def test_known_versions(bare: httpx.AsyncClient, api_key: str, value: str) -> None:
    headers = {"x-api-key": api_key, "anthropic-version": value}
    assert_ok(await bare.post("/v1/messages", json=BODY, headers=headers))


async def test_auth_is_checked_before_the_version(bare: httpx.AsyncClient) -> None:
    # api-spec §3: the order is unconfirmed; Parley checks auth first, like mocks in the wild.
    response = await bare.post("/v1/messages", json=BODY, headers={"anthropic-version": "bad"})
    assert_error(response, 401, "authentication_error", "x-api-key header is required")


async def test_auth_is_checked_before_the_body(bare: httpx.AsyncClient) -> None:
    response = await bare.post(
        "/v1/messages", content=b"{not json", headers={"content-type": "application/json", **V2023}
    )
    assert_error(response, 401, "authentication_error", "x-api-key header is required")


async def test_version_is_checked_before_the_body(bare: httpx.AsyncClient, api_key: str) -> None:
    response = await bare.post("/v1/messages", json={}, headers={"x-api-key": api_key})
    assert_error(response, 400, "invalid_request_error", "anthropic-version: header is required")


async def test_every_request_is_authenticated(bare: httpx.AsyncClient, api_key: str) -> None:
    # The check is per request: a good key earlier does not let a bad one through later.
    assert_ok(await bare.post("/v1/messages", json=BODY, headers={"x-api-key": api_key, **V2023}))
    response = await bare.post(
        "/v1/messages", json=BODY, headers={"x-api-key": api_key + "x", **V2023}
    )
    assert_error(response, 401, "authentication_error", "invalid x-api-key")


async def test_empty_body_on_count_tokens_is_a_validation_error(
    client: httpx.AsyncClient,
) -> None:
    # api-spec §1: the Python SDK sends Content-Type: application/json on body-less POSTs;
    # an empty body is an empty object, so the answer names the missing field.
    response = await client.post(
        "/v1/messages/count_tokens",
        content=b"",
        headers={"content-type": "application/json", "content-length": "0"},
    )
    assert_error(response, 400, "invalid_request_error", "model: Field required")


async def test_empty_body_on_messages_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", content=b"  \n", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_request_error", "model: Field required")
