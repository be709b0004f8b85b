"""Idle streams get `ping` events (api-spec §6.2)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from parley.config import ModelConfig
from parley.server.app import create_app
from parley.services import Services
from tests.conftest import scripted_settings


async def test_slow_stream_is_kept_alive_with_pings(tmp_path: Path) -> None:
    slow = ModelConfig(id="slow", engine="scripted", token_delay=0.25, slots=1)
    settings = scripted_settings(tmp_path, models=[slow], ping_interval=0.05)
    svc = Services.from_settings(settings)
    await svc.start()
    try:
        key = (await svc.key_store.create("t")).secret
        transport = httpx.ASGITransport(app=create_app(svc, manage_services=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                "/v1/messages",
                headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                json={
                    "model": "slow",
                    "max_tokens": 10,
                    "stream": True,
                    "messages": [{"role": "user", "content": "count: 3"}],
                },
            )
    finally:
        await svc.aclose()
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    datas = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert [d["type"] for d in datas] == names
    # Each 0.25 s gap between tokens is longer than the 0.05 s ping interval.
    first_delta, last_delta = (
        names.index("content_block_delta"),
        len(names) - 1 - names[::-1].index("content_block_delta"),
    )
    assert "ping" in names[first_delta:last_delta]
    assert names.count("ping") >= 4
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
