"""Streams observed live on a real server process: text arrives as it is produced,
a client that leaves frees the engine, and concurrent streams interleave."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL
from tests.e2e.sse import TimedEvent, headers, iter_events
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e


def stream_events(server: ParleyProcess, body: dict[str, object]) -> list[TimedEvent]:
    with (
        httpx.Client(base_url=server.base_url, timeout=60) as http,
        http.stream("POST", "/v1/messages", json=body, headers=headers(server.api_key)) as resp,
    ):
        assert resp.status_code == 200, resp.read()
        return list(iter_events(resp))


def text_deltas(events: list[TimedEvent]) -> list[TimedEvent]:
    return [e for e in events if e.name == "content_block_delta"]


def test_first_delta_arrives_before_generation_ends(scripted_server: ParleyProcess) -> None:
    events = stream_events(
        scripted_server,
        {
            "model": SCRIPTED_MODEL,
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "count: 30"}],
        },
    )
    deltas = text_deltas(events)
    end = next(e for e in events if e.name == "message_delta")
    assert len(deltas) == 30
    # Streamed, not buffered: the first delta reached the client before the
    # engine had produced the rest, so arrival times spread over the generation.
    assert deltas[0].at < deltas[-1].at < end.at + 1e-9
    arrivals = sorted({round(d.at, 3) for d in deltas})
    assert len(arrivals) > 10


@pytest.mark.model
def test_real_model_streams_text_before_it_finishes(model_server: ParleyProcess) -> None:
    events = stream_events(
        model_server,
        {
            "model": "smollm2",
            "max_tokens": 60,
            "stream": True,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        },
    )
    deltas = text_deltas(events)
    stop = next(e for e in events if e.name == "message_stop")
    assert len(deltas) > 5
    assert deltas[0].at < deltas[len(deltas) // 2].at < deltas[-1].at <= stop.at
    assert events[0].name == "message_start"


@pytest.mark.model
def test_two_concurrent_streams_both_progress(model_server: ParleyProcess) -> None:
    results: dict[str, list[TimedEvent]] = {}

    def run(name: str) -> None:
        results[name] = stream_events(
            model_server,
            {
                "model": "smollm2",
                "max_tokens": 80,
                "stream": True,
                "temperature": 0,
                "messages": [{"role": "user", "content": f"Tell a long tale about {name}."}],
            },
        )

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a fox", "a ship")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    a, b = (text_deltas(results[n]) for n in ("a fox", "a ship"))
    assert len(a) > 10
    assert len(b) > 10
    # Interleaved: each stream received text while the other was still receiving.
    assert a[0].at < b[-1].at
    assert b[0].at < a[-1].at
    overlap_a = [d for d in a if b[0].at <= d.at <= b[-1].at]
    overlap_b = [d for d in b if a[0].at <= d.at <= a[-1].at]
    assert len(overlap_a) > 3
    assert len(overlap_b) > 3


@pytest.mark.model
def test_disconnect_frees_the_engine_slot(tmp_path: Path) -> None:
    config = """
queue_size = 0
[[models]]
id = "smollm2-135m-instruct"
aliases = ["smollm2"]
slots = 1
"""
    server = ParleyProcess(tmp_path / "data", config=config).start()
    try:
        body = {
            "model": "smollm2",
            "max_tokens": 3000,
            "stream": True,
            "messages": [{"role": "user", "content": "Write a very long essay about rivers."}],
        }
        seen = 0
        with (
            httpx.Client(base_url=server.base_url, timeout=60) as http,
            http.stream("POST", "/v1/messages", json=body, headers=headers(server.api_key)) as r,
        ):
            for event in iter_events(r):
                seen += event.name == "content_block_delta"
                if seen == 5:
                    break  # leaving the block closes the connection mid-stream
        # The only slot is busy until the engine notices; with no queue a request
        # meanwhile is refused with 529. It must be accepted again soon after.
        quick = {
            "model": "smollm2",
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}],
        }
        statuses = []
        for _ in range(100):
            resp = httpx.post(
                f"{server.base_url}/v1/messages", json=quick, headers=headers(server.api_key)
            )
            statuses.append(resp.status_code)
            if resp.status_code == 200:
                break
            assert resp.status_code == 529, resp.text
            time.sleep(0.05)
        assert statuses[-1] == 200
        cancelled = re.search(r"generation cancelled after (\d+) tokens", server.logs())
        assert cancelled is not None, server.logs()
        # Generation stopped within a few tokens of the disconnect, far from max_tokens.
        assert int(cancelled.group(1)) < 5 + 50
    finally:
        server.stop()
