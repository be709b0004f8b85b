"""Message Batches through the newest official Python SDK against a real `parley serve`
(api-spec §11): create, retrieve, list with auto-pagination, results(), cancel, delete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types.messages import MessageBatch

from tests.conftest import SCRIPTED_MODEL
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e


def request(custom_id: str, text: str = "say: ok", **params: Any) -> Any:
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(params)
    return {"custom_id": custom_id, "params": body}


@pytest.fixture(scope="module")
def sdk(scripted_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:
        yield client


def wait_ended(sdk: anthropic.Anthropic, batch_id: str) -> MessageBatch:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch = sdk.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not end")


def test_create_retrieve_and_results(sdk: anthropic.Anthropic) -> None:
    created = sdk.messages.batches.create(
        requests=[
            request("hello", "say: Hello from a batch"),
            request("numbers", "count: 4"),
            request("unknown-model", model="no-such-model"),
        ]
    )
    assert created.id.startswith("msgbatch_")
    assert created.type == "message_batch"
    assert created.processing_status == "in_progress"
    assert created.request_counts.processing == 3
    assert created.results_url is None
    assert created.expires_at > created.created_at
    assert created._request_id is not None

    ended = wait_ended(sdk, created.id)
    assert ended.ended_at is not None
    assert ended.request_counts.succeeded == 2
    assert ended.request_counts.errored == 1
    assert ended.request_counts.processing == 0

    results = {r.custom_id: r.result for r in sdk.messages.batches.results(created.id)}
    assert set(results) == {"hello", "numbers", "unknown-model"}
    hello = results["hello"]
    assert hello.type == "succeeded"
    assert hello.message.content[0].type == "text"
    assert hello.message.content[0].text == "Hello from a batch"
    assert hello.message.usage.service_tier == "batch"
    numbers = results["numbers"]
    assert numbers.type == "succeeded"
    assert numbers.message.usage.output_tokens == 4
    errored = results["unknown-model"]
    assert errored.type == "errored"
    assert errored.error.type == "error"
    assert errored.error.error.type == "not_found_error"
    assert errored.error.error.message == "model: no-such-model"


def test_list_auto_paginates_newest_first(sdk: anthropic.Anthropic) -> None:
    ours = [sdk.messages.batches.create(requests=[request(f"b{i}")]).id for i in range(5)]
    listed = [b.id for b in sdk.messages.batches.list(limit=2)]  # pages of two
    assert [batch_id for batch_id in listed if batch_id in ours] == ours[::-1]
    page = sdk.messages.batches.list(limit=2)
    assert page.has_more is True
    assert page.first_id == page.data[0].id
    assert page.last_id == page.data[-1].id
    for batch_id in ours:
        wait_ended(sdk, batch_id)


def test_cancel_then_delete(sdk: anthropic.Anthropic) -> None:
    # Slow requests (about a second each): canceled long before they could all finish.
    batch = sdk.messages.batches.create(
        requests=[request(f"slow{i}", "count: 100", max_tokens=100) for i in range(6)]
    )
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.batches.delete(batch.id)
    assert "cannot be deleted" in refused.value.message
    with pytest.raises(anthropic.AnthropicError, match="Has it finished processing"):
        sdk.messages.batches.results(batch.id)

    canceling = sdk.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    ended = wait_ended(sdk, batch.id)
    counts = ended.request_counts
    assert counts.canceled >= 4
    assert counts.succeeded + counts.canceled == 6
    results = list(sdk.messages.batches.results(batch.id))
    assert len(results) == 6
    assert {r.result.type for r in results} <= {"succeeded", "canceled"}

    deleted = sdk.messages.batches.delete(batch.id)
    assert deleted.id == batch.id
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.retrieve(batch.id)


def test_unknown_batch_is_not_found(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.batches.retrieve("msgbatch_01doesnotexist")
    assert caught.value.status_code == 404
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.cancel("msgbatch_01doesnotexist")
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.delete("msgbatch_01doesnotexist")


def test_create_time_validation_reaches_the_sdk(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.batches.create(requests=[request("a" * 65)])
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "requests.0.custom_id: String should have at most 64 characters",
        },
        "request_id": caught.value.request_id,
    }


async def test_async_client_reads_results(scripted_server: ParleyProcess) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:
        batch = await client.messages.batches.create(requests=[request("only", "say: async")])
        while batch.processing_status != "ended":
            await asyncio.sleep(0.05)
            batch = await client.messages.batches.retrieve(batch.id)
        lines = [line async for line in await client.messages.batches.results(batch.id)]
    assert [line.custom_id for line in lines] == ["only"]
    assert lines[0].result.type == "succeeded"
