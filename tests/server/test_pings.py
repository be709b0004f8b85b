"""Idle streams get `ping` events (api-spec §6.2)."""

from __future__ import annotations

import json
from pathlib import Path

from parley.config import ModelConfig
from tests.conftest import running_app, scripted_settings


async def test_slow_stream_is_kept_alive_with_pings(tmp_path: Path) -> None:
    slow = ModelConfig(id="slow", engine="scripted", token_delay=0.25, slots=1)
    settings = scripted_settings(tmp_path, models=[slow], ping_interval=0.05)
    async with running_app(settings) as (_, http):
        response = await http.post(
            "/v1/messages",
            json={
                "model": "slow",
                "max_tokens": 10,
                "stream": True,
                "messages": [{"role": "user", "content": "count: 3"}],
            },
        )
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
