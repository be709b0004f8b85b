from __future__ import annotations

import httpx

from tests.conftest import SCRIPTED_MODEL


async def test_plain_message_round_trip(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages",
        json={
            "model": SCRIPTED_MODEL,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "say: Hello there"}],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == [{"type": "text", "text": "Hello there"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 2
    assert response.headers["request-id"].startswith("req_")
