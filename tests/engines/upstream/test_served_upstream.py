"""A real `parley serve` (uvicorn on uvloop, as deployed) in front of a real upstream
process: the generation client on the event loop it runs on in production, its kept-
alive connections reused across requests, plain and streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.engines.upstream.procs import FakeUpstreamProcess
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

CONFIG = """
[[models]]
id = "up"
context_window = 8192
max_output_tokens = 256

[[models.backends]]
engine = "openai"
base_url = "{url}"
model = "fake"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ParleyProcess, FakeUpstreamProcess]]:
    upstream = FakeUpstreamProcess(tmp_path / "fake.log", name="fake").start()
    server = ParleyProcess(tmp_path / "serve", config=CONFIG.format(url=upstream.url))
    try:
        yield server.start(), upstream
    finally:
        server.stop()
        upstream.stop()


def test_plain_and_streamed_messages_through_an_upstream(
    served: tuple[ParleyProcess, FakeUpstreamProcess],
) -> None:
    server, upstream = served
    with anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key) as client:
        for n in range(3):
            text = f"say: reply number {n}"
            message = client.messages.create(
                model="up", max_tokens=50, messages=[{"role": "user", "content": text}]
            )
            assert message.content[0].type == "text"
            assert message.content[0].text == f"reply number {n}"
            assert message.stop_reason == "end_turn"
            with client.messages.stream(
                model="up", max_tokens=50, messages=[{"role": "user", "content": text}]
            ) as stream:
                assert "".join(stream.text_stream) == f"reply number {n}"
                assert stream.get_final_message().usage.output_tokens > 0
        # An upstream's refusal still reaches the client as the API's error.
        with pytest.raises(anthropic.RateLimitError):
            client.with_options(max_retries=0).messages.create(
                model="up", max_tokens=50, messages=[{"role": "user", "content": "status: 429"}]
            )
    # Six generations and a refusal, one at a time, over one kept-alive connection.
    counts = httpx.get(upstream.url.removesuffix("/v1") + "/fake/counts").json()
    assert counts == {"requests": 7, "connections": 1}
