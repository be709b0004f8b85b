"""Direct browser access and CORS (api-spec §14, api-version §19.3)."""

from __future__ import annotations

from pathlib import Path

import httpx

from parley.server.cors import NOT_ALLOWED
from parley.services import Services
from tests.conftest import (
    SCRIPTED_MODEL,
    asgi_client,
    old_sdk_headers,
    running_app,
    scripted_settings,
)

ORIGIN = {"origin": "http://app.example"}
OPT_IN = {"anthropic-dangerous-direct-browser-access": "true"}
BODY = {
    "model": SCRIPTED_MODEL,
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "say: hi"}],
}


async def test_preflight_echoes_requested_headers_and_lists_authorization(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/v1/messages",
        headers={
            **ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-stainless-os, content-type, "
            "anthropic-dangerous-direct-browser-access, x-api-key",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = [h.strip() for h in response.headers["access-control-allow-headers"].split(",")]
    assert "x-stainless-os" in allowed
    assert "authorization" in allowed  # a wildcard would not cover it
    assert "*" not in allowed
    assert set(response.headers["access-control-allow-methods"].split(", ")) >= {"GET", "POST"}
    assert int(response.headers["access-control-max-age"]) > 0


async def test_preflight_is_answered_on_every_api_path(client: httpx.AsyncClient) -> None:
    for path in ("/v1/models", "/v1/messages/count_tokens", "/v1/models/x", "/v1/anything"):
        response = await client.options(
            path, headers={**ORIGIN, "access-control-request-method": "GET"}
        )
        assert response.status_code == 204, path
        assert response.headers["access-control-allow-origin"] == "*"


async def test_opted_in_browser_request_gets_cors_headers(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=BODY, headers={**ORIGIN, **OPT_IN})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = response.headers["access-control-expose-headers"].split(", ")
    for name in ("request-id", "retry-after", "x-should-retry"):
        assert name in exposed
    assert "anthropic-ratelimit-output-tokens-remaining" in exposed
    assert "anthropic-ratelimit-output-tokens-remaining" in response.headers


async def test_cors_headers_are_on_errors_too(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", json=BODY, headers={**ORIGIN, **OPT_IN, "x-api-key": "wrong"}
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json()["error"]["message"] == "invalid x-api-key"


async def test_browser_request_without_opt_in_is_refused_without_cors(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/messages", json=BODY, headers=ORIGIN)
    assert response.status_code == 401
    assert "access-control-allow-origin" not in response.headers
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "CORS requests must set 'anthropic-dangerous-direct-browser-access' header",
        },
        "request_id": response.headers["request-id"],
    }


async def test_server_side_clients_need_no_opt_in(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=BODY)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_browser_access_switched_off(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path, browser_access=False)
    async with running_app(settings) as (_, http):
        response = await http.post("/v1/messages", json=BODY, headers={**ORIGIN, **OPT_IN})
        assert response.status_code == 403
        assert response.json()["error"]["type"] == "permission_error"
        assert response.json()["error"]["message"].startswith(
            "CORS requests are not allowed for this Organization because of its settings."
        )
        # Readable by the page, so it can say why.
        assert response.headers["access-control-allow-origin"] == "*"
        plain = await http.post("/v1/messages", json=BODY)
        assert plain.status_code == 200


async def test_browser_access_switched_off_for_one_key(services: Services) -> None:
    closed = await services.keys.store.create("server only", browser_access=False)
    open_key = (await services.keys.store.create("byok app")).secret
    async with asgi_client(services, old_sdk_headers(closed.secret)) as http:
        refused = await http.post("/v1/messages", json=BODY, headers={**ORIGIN, **OPT_IN})
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_error"
        assert refused.json()["error"]["message"] == NOT_ALLOWED
        assert refused.headers["access-control-allow-origin"] == "*"
        # The same key from a server (no Origin) is fine.
        assert (await http.post("/v1/messages", json=BODY)).status_code == 200
    async with asgi_client(services, old_sdk_headers(open_key)) as http:
        allowed = await http.post("/v1/messages", json=BODY, headers={**ORIGIN, **OPT_IN})
        assert allowed.status_code == 200

    # Switching it on takes effect from the next request (no cache to expire).
    await services.keys.store.update(closed.key.id, browser_access=True)
    async with asgi_client(services, old_sdk_headers(closed.secret)) as http:
        now_allowed = await http.post("/v1/messages", json=BODY, headers={**ORIGIN, **OPT_IN})
        assert now_allowed.status_code == 200
