"""The OpenAI-compatible engine against a real server: llama-cpp-python's own
(`python -m llama_cpp.server`) on the bundled SmolLM2 GGUF."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.engines.llamacpp import bundled_model_path
from tests.conftest import running_app
from tests.upstream.conftest import (
    UPSTREAM_MODEL,
    error_of,
    names,
    openai_model,
    sse,
    upstream_settings,
)

pytestmark = [pytest.mark.model, pytest.mark.e2e]

STORY = "Write a long story about a lighthouse keeper."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path())]
    args += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2"]
    # One thread: on two shared cores more threads are much slower (engine-notes.md).
    args += ["--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server not ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def http(llama_server: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # llama-cpp-python's server cannot continue an assistant message: refuse prefills.
    model = openai_model(llama_server, model="smollm2", prefill="refuse")
    async with running_app(upstream_settings(tmp_path, model)) as (_, client):
        yield client


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": UPSTREAM_MODEL,
        "max_tokens": 12,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


async def test_plain_and_streamed_replies(http: httpx.AsyncClient) -> None:
    plain = await http.post("/v1/messages", json=body("What is the capital of France?"))
    assert plain.status_code == 200, plain.text
    message = plain.json()
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"].strip()
    assert message["stop_reason"] in ("end_turn", "max_tokens")
    assert message["usage"]["output_tokens"] >= 1

    streamed = await http.post("/v1/messages", json=body(STORY, max_tokens=8, stream=True))
    events = sse(streamed.text)
    order = names(events)
    assert order[:2] == ["message_start", "content_block_start"]
    assert order[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"  # finish_reason "length"
    assert 1 <= delta["usage"]["output_tokens"] <= 8


async def test_stop_sequence_on_a_real_model(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages", json=body(STORY, max_tokens=40, stop_sequences=[" "], stream=True)
    )
    events = sse(response.text)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    delta = next(d for n, d in events if n == "message_delta")
    assert (delta["delta"]["stop_reason"], delta["delta"]["stop_sequence"]) == (
        "stop_sequence",
        " ",
    )
    assert " " not in text


async def test_prefill_is_refused_for_this_server(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages",
        json={
            **body("Name a colour."),
            "messages": [
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "The colour is"},
            ],
        },
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"
