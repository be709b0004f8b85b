"""Idle streams get `ping` events (api-spec §6.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from parley.config import ModelConfig
from parley.protocol.stream import (
    ContentBlockDeltaEvent,
    MessageStopEvent,
    PingEvent,
    StreamEvent,
    TextDelta,
)
from parley.server.event_stream import EventStreamResponse
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


async def batches_with_gaps(gap: float) -> AsyncGenerator[list[StreamEvent], None]:
    yield [PingEvent()]  # stands for message_start: any first batch
    for text in ("a", "b", "c"):
        await asyncio.sleep(gap)
        yield [ContentBlockDeltaEvent(index=0, delta=TextDelta(text=text))]
    yield [MessageStopEvent()]


async def test_pings_from_the_timer_never_overtake_or_follow_the_stream() -> None:
    """Each send takes longer than the ping interval (a client slow to read): a ping
    waits for the send in progress, the next batch waits for a ping in progress, and
    nothing is sent after the batch that ends the stream."""
    sent: list[dict[str, Any]] = []
    in_send = 0
    closed: list[bool] = []

    async def slow_send(message: dict[str, Any]) -> None:
        nonlocal in_send
        in_send += 1
        assert in_send == 1, "two sends at once"
        await asyncio.sleep(0.03)
        sent.append(message)
        in_send -= 1

    async def on_close() -> None:
        closed.append(True)

    response = EventStreamResponse(batches_with_gaps(0.05), {}, on_close, ping_interval=0.01)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    await response({"type": "http"}, receive, slow_send)
    assert sent[0]["type"] == "http.response.start"
    bodies = sent[1:]
    assert all(m["type"] == "http.response.body" for m in bodies)
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    text = b"".join(m["body"] for m in bodies).decode()
    names = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    deltas = [n for n in names if n != "ping"]
    assert deltas == ["content_block_delta"] * 3 + ["message_stop"]
    assert names[-1] == "message_stop"
    # Each gap before a delta, five intervals long, had its ping.
    assert all(names[i - 1] == "ping" for i, n in enumerate(names) if n == "content_block_delta")
    assert closed == [True]
