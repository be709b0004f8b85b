"""Two upstream processes behind one model; one is killed during a run. No client sees
an error for a request whose reply had not started streaming (routing)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.engines.routing import RoutedEngine
from tests.engines.upstream.conftest import (
    UPSTREAM_MODEL,
    live_parley,
    openai_model,
    upstream_settings,
)
from tests.engines.upstream.procs import FakeUpstreamProcess

pytestmark = pytest.mark.e2e

WORDS = " ".join(f"w{i}" for i in range(30))


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[tuple[FakeUpstreamProcess, FakeUpstreamProcess]]:
    a = FakeUpstreamProcess(tmp_path / "a.log", name="a", token_delay=0.03).start()
    b = FakeUpstreamProcess(tmp_path / "b.log", name="b", token_delay=0.03).start()
    yield a, b
    a.stop()
    b.stop()


@dataclass
class Outcome:
    status: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    @property
    def streamed_text(self) -> bool:
        return "content_block_delta" in self.names

    @property
    def succeeded(self) -> bool:
        return self.status == 200 and self.names[-1:] == ["message_stop"]


async def stream(
    http: httpx.AsyncClient, text: str, on_delta: asyncio.Event | None = None
) -> Outcome:
    body = {
        "model": UPSTREAM_MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": text}],
    }
    async with http.stream("POST", "/v1/messages", json=body) as response:
        outcome = Outcome(response.status_code)
        if response.status_code != 200:
            await response.aread()
            return outcome
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                outcome.events.append((name, json.loads(line[6:])))
                if name == "content_block_delta" and on_delta is not None:
                    on_delta.set()
    return outcome


async def plain(http: httpx.AsyncClient, text: str) -> Outcome:
    body = {
        "model": UPSTREAM_MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
    }
    response = await http.post("/v1/messages", json=body)
    # A whole message is one "event" here: the complete reply.
    return Outcome(response.status_code, [("message_stop", response.json())])


async def test_killing_one_upstream_mid_run(
    upstreams: tuple[FakeUpstreamProcess, FakeUpstreamProcess],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="parley.engines.routing")
    a, b = upstreams
    model = openai_model(a.url, b.url, name=None)
    model.routing.eject_after = 2
    settings = upstream_settings(tmp_path, model, ping_interval=0.2)
    async with live_parley(settings) as parley, parley.client() as http:
        streaming = [asyncio.Event() for _ in range(8)]
        # Replies that are streaming when the kill comes, and requests still waiting
        # for their first token (the upstream "reads a long prompt" for 1.5 s).
        mid_reply = [
            asyncio.create_task(stream(http, f"say: {WORDS}", started)) for started in streaming
        ]
        in_prefill = [
            asyncio.create_task(stream(http, f"prefill_delay: 1.5\nsay: {WORDS}")) for _ in range(8)
        ]
        await asyncio.gather(*(event.wait() for event in streaming))
        a.kill()
        after = [asyncio.create_task(stream(http, f"say: {WORDS}")) for _ in range(4)]
        after += [asyncio.create_task(plain(http, f"say: {WORDS}")) for _ in range(4)]
        outcomes = await asyncio.gather(*mid_reply, *in_prefill, *after)
        router = parley.services.registry.resolve(UPSTREAM_MODEL).engine
        assert isinstance(router, RoutedEngine)
        killed = router.backends[0]

    for outcome in outcomes:
        # The only errors allowed are `error` events after reply text went out.
        assert outcome.status == 200, outcome
        if not outcome.succeeded:
            assert outcome.names[-1] == "error", outcome.names
            assert outcome.streamed_text, outcome.names
    # Requests waiting on the killed upstream went to the other one, unseen by clients.
    assert all(o.succeeded for o in outcomes[8:])
    assert "failed before the reply started" in caplog.text
    # Replies the kill cut off: half of the streaming ones went to the killed upstream.
    assert any(not o.succeeded for o in outcomes[:8])
    assert killed.ejected
