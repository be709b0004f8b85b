"""In process: once draining, API requests get a retryable 529 with `connection:
close`, other paths are still served, and `Services.draining` says so."""

from __future__ import annotations

import httpx

from parley.services import Services


async def test_a_draining_process_turns_api_requests_away(
    services: Services, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/v1/models")).status_code == 200
    assert not services.draining
    services.lifecycle.start_draining()
    assert services.draining
    response = await client.get("/v1/models")
    assert response.status_code == 529
    assert response.headers["x-should-retry"] == "true"
    assert response.headers["connection"] == "close"
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": response.headers["request-id"],
    }
    assert (await client.get("/")).status_code == 200  # not an API path: still served
