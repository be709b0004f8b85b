"""Prompt caching over HTTP on the embedded model (api-spec §16): the same cache counts
in a plain response, in a stream's `message_start` and `message_delta`, in a batch
result and in the usage store; `count_tokens` is their sum; entries are the key's own;
a thread's `continue` reads what its `create` wrote; five breakpoints are a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from parley.config import ModelConfig
from parley.engines.llamacpp import LlamaCppEngine
from tests.batches.conftest import App, batch_settings, started
from tests.conftest import asgi_client, old_sdk_headers
from tests.server.test_streaming import parse_sse

pytestmark = pytest.mark.model

MODEL = "smollm2-135m-instruct"
SYSTEM = (
    "You are the help desk of a small public library. Answer questions about opening "
    "hours, borrowing rules, the reading room and the children's corner. Be brief. "
) * 3
MARK = {"type": "ephemeral"}
THREADS = {"anthropic-beta": "message-threads-2026-08-12"}


def body(question: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 16,
        "temperature": 0,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": MARK}],
        "messages": [{"role": "user", "content": question}],
        **fields,
    }


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    model = ModelConfig(
        id=MODEL,
        slots=2,
        threads=2,
        context_window=2048,
        max_output_tokens=256,
        cache_min_tokens=64,
    )
    async with started(batch_settings(tmp_path, models=[model])) as running:
        yield running


def system_mark(app: App) -> int:
    """The system block's breakpoint, counted with the model's tokenizer: the end of
    its text in SmolLM2's ChatML prompt."""
    engine = app.svc.registry.resolve(MODEL).engine
    assert isinstance(engine, LlamaCppEngine)
    model = engine.loop.model
    assert model is not None
    prefix = f"<|im_start|>system\n{SYSTEM}"
    return len(model.tokenize(prefix, add_bos=model.add_bos, special=True))


def counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    return (
        usage["input_tokens"],
        usage["cache_creation_input_tokens"],
        usage["cache_read_input_tokens"],
    )


async def test_cache_counts_agree_everywhere_and_stay_with_their_key(app: App) -> None:
    mark = system_mark(app)
    question = body("When does the library open?")
    # count_tokens takes the prompt's fields only.
    prompt = {k: v for k, v in question.items() if k not in ("max_tokens", "temperature")}
    counted = await app.http.post("/v1/messages/count_tokens", json=prompt)
    assert counted.status_code == 200, counted.text
    total = counted.json()["input_tokens"]

    first = (await app.http.post("/v1/messages", json=question)).json()
    assert counts(first["usage"]) == (total - mark, mark, 0)
    assert first["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": mark,
        "ephemeral_1h_input_tokens": 0,
    }

    streamed = await app.http.post("/v1/messages", json={**question, "stream": True})
    events = parse_sse(streamed.text)
    start = events[0].data["message"]["usage"]
    delta = next(e.data["usage"] for e in events if e.name == "message_delta")
    assert counts(start) == counts(delta) == (total - mark, 0, mark)
    text = "".join(e.data["delta"]["text"] for e in events if e.name == "content_block_delta")
    assert text == first["content"][0]["text"]  # temperature 0: the same, cached or not

    batch = await app.create([{"custom_id": "a", "params": question}])
    await app.worker.run_until_idle()
    (result,) = await app.results(batch["id"])
    assert counts(result["result"]["message"]["usage"]) == (total - mark, 0, mark)

    other = (await app.svc.keys.store.create("other")).secret
    async with asgi_client(app.svc, old_sdk_headers(other)) as http:
        elsewhere = (await http.post("/v1/messages", json=question)).json()
    assert counts(elsewhere["usage"]) == (total - mark, mark, 0)

    await app.svc.usage.flush()
    by_key: dict[str, tuple[int, int, int]] = {}
    for row in await app.svc.usage.store.rows(models=[MODEL]):
        c = row.counts
        by_key[row.key_id] = (
            c["input_tokens"],
            c["cache_creation_input_tokens"],
            c["cache_read_input_tokens"],
        )
    assert sorted(by_key.values()) == sorted(
        [(3 * (total - mark), mark, 2 * mark), (total - mark, mark, 0)]
    )


async def test_a_thread_continue_reads_what_its_create_wrote(app: App) -> None:
    mark = system_mark(app)
    headers = THREADS
    created = await app.http.post(
        "/v1/messages",
        json=body("Can I borrow ten books?", thread={"type": "create"}),
        headers=headers,
    )
    assert created.status_code == 200, created.text
    assert counts(created.json()["usage"])[1:] == (mark, 0)
    continued = await app.http.post(
        "/v1/messages",
        json={
            "model": MODEL,
            "max_tokens": 16,
            "temperature": 0,
            "messages": [{"role": "user", "content": "And for how long?"}],
            "thread": {"type": "continue", "previous_message_id": created.json()["id"]},
        },
        headers=headers,
    )
    assert continued.status_code == 200, continued.text
    assert counts(continued.json()["usage"])[1:] == (0, mark)


async def test_five_breakpoints_are_refused(app: App) -> None:
    marked = [{"type": "text", "text": f"Part {i}.", "cache_control": MARK} for i in range(4)]
    response = await app.http.post(
        "/v1/messages", json=body("Hi", system=[*body("")["system"], *marked])
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    }
