"""The batch endpoints in-process: shapes, validation, ownership, pagination, cancel,
delete and results (api-spec §11)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from parley.config import Settings
from parley.protocol.batches import MAX_REQUESTS
from parley.store.schema import batch_requests, message_batches
from tests.batches.conftest import (
    BATCHES,
    App,
    batch_request,
    batch_settings,
    requests_,
    started,
)
from tests.conftest import asgi_client, old_sdk_headers

BATCH_FIELDS = {
    "id",
    "type",
    "processing_status",
    "request_counts",
    "ended_at",
    "created_at",
    "expires_at",
    "archived_at",
    "cancel_initiated_at",
    "results_url",
}
COUNT_KEYS = {"processing", "succeeded", "errored", "canceled", "expired"}


async def rows(app: App, table: Table) -> int:
    assert app.svc.database is not None
    async with app.svc.database.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    message: str = body["error"]["message"]
    return f"{body['error']['type']}: {message}"


# -- create and retrieve ----------------------------------------------------------


async def test_create_returns_an_in_progress_batch_with_every_field(app: App) -> None:
    batch = await app.create(requests_(3))
    assert set(batch) == BATCH_FIELDS
    assert batch["id"].startswith("msgbatch_01")
    assert batch["type"] == "message_batch"
    assert batch["processing_status"] == "in_progress"
    assert batch["request_counts"] == {
        "processing": 3,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert batch["ended_at"] is None
    assert batch["archived_at"] is None
    assert batch["cancel_initiated_at"] is None
    assert batch["results_url"] is None
    created = datetime.fromisoformat(batch["created_at"])
    assert created.timestamp() == app.clock.now
    assert datetime.fromisoformat(batch["expires_at"]) - created == timedelta(hours=24)
    assert await app.get(batch["id"]) == batch


async def test_a_batch_ends_with_one_result_per_request(app: App) -> None:
    batch = await app.create(
        [
            batch_request("a", "say: alpha beta"),
            batch_request("b", "count: 3"),
            batch_request("c", "say: x", max_tokens=0),
        ]
    )
    await app.worker.run_until_idle()
    ended = await app.get(batch["id"])
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"] == {
        "processing": 0,
        "succeeded": 3,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert ended["ended_at"] is not None
    assert ended["results_url"] == f"http://parley.test{BATCHES}/{batch['id']}/results"
    results = {line["custom_id"]: line["result"] for line in await app.results(batch["id"])}
    assert set(results) == {"a", "b", "c"}
    texts = {cid: "".join(b["text"] for b in r["message"]["content"]) for cid, r in results.items()}
    assert texts == {"a": "alpha beta", "b": "1 2 3", "c": ""}
    for result in results.values():
        assert result["type"] == "succeeded"
        message = result["message"]
        assert message["id"].startswith("msg_")
        assert message["type"] == "message"
        assert message["model"] == "scripted-1"
        assert message["usage"]["service_tier"] == "batch"
    assert results["b"]["message"]["usage"]["output_tokens"] == 3
    assert results["c"]["message"]["stop_reason"] == "max_tokens"


async def test_invalid_params_become_errored_results_with_the_full_envelope(app: App) -> None:
    batch = await app.create(
        [
            batch_request("fine"),
            {"custom_id": "no-max-tokens", "params": {"model": "scripted", "messages": []}},
            batch_request("unknown-model", model="no-such-model"),
            batch_request("too-long", max_tokens=5000),
            batch_request("empty-text", text=""),
            batch_request("mid-way", "say: a b\nfail: overloaded_error"),
        ]
    )
    await app.worker.run_until_idle()
    ended = await app.get(batch["id"])
    assert ended["request_counts"]["succeeded"] == 1
    assert ended["request_counts"]["errored"] == 5
    results = {line["custom_id"]: line["result"] for line in await app.results(batch["id"])}
    assert results["fine"]["type"] == "succeeded"
    errors = {cid: r["error"] for cid, r in results.items() if r["type"] == "errored"}
    for envelope in errors.values():
        assert envelope["type"] == "error"
        assert set(envelope["error"]) == {"type", "message"}
    # The same wording /v1/messages gives for the same params.
    assert errors["no-max-tokens"]["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    assert errors["unknown-model"]["error"] == {
        "type": "not_found_error",
        "message": "model: no-such-model",
    }
    direct = await app.http.post("/v1/messages", json=batch_request("x", max_tokens=5000)["params"])
    assert errors["too-long"]["error"] == direct.json()["error"]
    assert errors["empty-text"]["error"]["type"] == "invalid_request_error"
    assert errors["mid-way"]["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_params_follow_the_rules_of_the_version_that_created_the_batch(app: App) -> None:
    requests = [batch_request("t", temperature=0.5)]
    old = await app.create(requests)
    new = await app.http.post(
        BATCHES, json={"requests": requests}, headers={"anthropic-version": "2026-10-21"}
    )
    assert new.status_code == 200, new.text
    await app.worker.run_until_idle()
    assert (await app.results(old["id"]))[0]["result"]["type"] == "succeeded"
    errored = (await app.results(new.json()["id"]))[0]["result"]
    assert errored["error"]["error"] == {
        "type": "invalid_request_error",
        "message": "temperature: Extra inputs are not permitted",
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "invalid_request_error: requests: Field required"),
        (
            {"requests": []},
            "invalid_request_error: requests: List should have at least 1 item after "
            "validation, not 0",
        ),
        ({"requests": {}}, "invalid_request_error: requests: Input should be a valid list"),
        (
            {"requests": [batch_request("a")], "extra": 1},
            "invalid_request_error: extra: Extra inputs are not permitted",
        ),
        (
            {"requests": [batch_request("a"), {"custom_id": "b"}]},
            "invalid_request_error: requests.1.params: Field required",
        ),
        (
            {"requests": [batch_request("a" * 65)]},
            "invalid_request_error: requests.0.custom_id: String should have at most 64 characters",
        ),
        (
            {"requests": [batch_request("")]},
            "invalid_request_error: requests.0.custom_id: String should have at least 1 character",
        ),
        (
            {"requests": [batch_request("a b")]},
            "invalid_request_error: requests.0.custom_id: String should match pattern "
            "'^[a-zA-Z0-9_-]{1,64}$'",
        ),
        (
            {"requests": [batch_request("a", stream=True)]},
            "invalid_request_error: requests.0.params.stream: Input should be False",
        ),
        (
            {"requests": [{"custom_id": "a", "params": [1]}]},
            "invalid_request_error: requests.0.params: Input should be a valid dictionary",
        ),
        (
            {"requests": [batch_request("a"), batch_request("b"), batch_request("a")]},
            "invalid_request_error: requests.2.custom_id: Duplicate custom_id 'a'; each request "
            "in a Message Batch needs a unique custom_id",
        ),
        ([], "invalid_request_error: Input should be a valid dictionary or object"),
    ],
)
async def test_create_refuses_a_malformed_batch(app: App, body: Any, expected: str) -> None:
    response = await app.http.post(BATCHES, json=body)
    assert await error_of(response, 400) == expected
    listed = await app.http.get(BATCHES)
    assert listed.json()["data"] == []  # nothing half-created is visible


async def test_stream_false_is_allowed(app: App) -> None:
    batch = await app.create([batch_request("a", stream=False)])
    await app.worker.run_until_idle()
    assert (await app.results(batch["id"]))[0]["result"]["type"] == "succeeded"


async def test_duplicate_custom_ids_far_apart_are_found(app: App) -> None:
    # Requests are stored in chunks; a duplicate of a request in an earlier chunk.
    requests = requests_(2500)
    requests.append(batch_request("r7"))
    response = await app.http.post(BATCHES, json={"requests": requests})
    assert await error_of(response, 400) == (
        "invalid_request_error: requests.2500.custom_id: Duplicate custom_id 'r7'; each "
        "request in a Message Batch needs a unique custom_id"
    )
    await app.svc.drain()  # the half-written batch is removed in the background
    assert await rows(app, message_batches) == 0
    assert await rows(app, batch_requests) == 0


async def test_more_than_the_maximum_number_of_requests_is_refused(tmp_path: Path) -> None:
    # The limit is 100,000 (api-spec §11); a lower configured one keeps the test small.
    async with started(batch_settings(tmp_path, max_batch_requests=5)) as app:
        response = await app.http.post(BATCHES, json={"requests": requests_(7)})
        assert await error_of(response, 400) == (
            "invalid_request_error: requests: List should have at most 5 items after "
            "validation, not 7"
        )
        assert (await app.create(requests_(5)))["request_counts"]["processing"] == 5


def test_the_default_maximum_is_the_apis() -> None:
    assert Settings().max_batch_requests == MAX_REQUESTS == 100_000


async def test_malformed_json_is_a_parse_error(app: App) -> None:
    response = await app.http.post(BATCHES, content=b'{"requests": [{"custom_id": "a",')
    message = await error_of(response, 400)
    assert message.startswith("invalid_request_error: There was an error parsing the body: ")


async def test_a_body_over_the_batch_limit_is_refused(tmp_path: Path) -> None:
    settings = batch_settings(tmp_path, max_batch_body_bytes=2000, max_body_bytes=100)
    async with started(settings) as app:
        small = await app.http.post(BATCHES, json={"requests": requests_(3)})
        assert small.status_code == 200, small.text  # over max_body_bytes, under the batch limit
        big = {"requests": requests_(40)}
        declared = await app.http.post(BATCHES, json=big)
        assert declared.status_code == 413
        assert declared.json() == {
            "error": {"type": "request_too_large", "message": "Request exceeds the maximum size"}
        }

        async def chunked() -> Any:  # no Content-Length: the limit is counted while reading
            yield json.dumps(big).encode()

        streamed = await app.http.post(BATCHES, content=chunked())
        assert streamed.status_code == 413


# -- ownership and errors -----------------------------------------------------------


async def test_other_keys_cannot_see_or_touch_a_batch(app: App) -> None:
    batch = await app.create(requests_(2))
    await app.worker.run_until_idle()
    other = (await app.svc.keys.store.create("other")).secret
    async with asgi_client(app.svc, old_sdk_headers(other)) as stranger:
        unknown = await stranger.get(f"{BATCHES}/msgbatch_01nosuchbatch")
        for method, path in [
            ("GET", f"{BATCHES}/{batch['id']}"),
            ("GET", f"{BATCHES}/{batch['id']}/results"),
            ("POST", f"{BATCHES}/{batch['id']}/cancel"),
            ("DELETE", f"{BATCHES}/{batch['id']}"),
        ]:
            response = await stranger.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"] == unknown.json()["error"]
        assert unknown.json()["error"] == {"type": "not_found_error", "message": "Not found"}
        assert (await stranger.get(BATCHES)).json()["data"] == []
    assert (await app.get(batch["id"]))["processing_status"] == "ended"


async def test_batches_need_a_key(app: App) -> None:
    response = await app.http.get(BATCHES, headers={"x-api-key": ""})
    assert await error_of(response, 401) == ("authentication_error: x-api-key header is required")


# -- list -------------------------------------------------------------------------


async def test_list_pages_newest_first(app: App) -> None:
    ids = []
    for i in range(5):
        ids.append((await app.create(requests_(1, prefix=f"b{i}-")))["id"])
        app.clock.advance(1)
    newest_first = ids[::-1]
    first = (await app.http.get(BATCHES, params={"limit": 2})).json()
    assert [b["id"] for b in first["data"]] == newest_first[:2]
    assert first["has_more"] is True
    assert first["first_id"] == newest_first[0]
    assert first["last_id"] == newest_first[1]
    rest = (await app.http.get(BATCHES, params={"limit": 2, "after_id": first["last_id"]})).json()
    assert [b["id"] for b in rest["data"]] == newest_first[2:4]
    last = (await app.http.get(BATCHES, params={"limit": 2, "after_id": rest["last_id"]})).json()
    assert [b["id"] for b in last["data"]] == newest_first[4:]
    assert last["has_more"] is False
    before = (await app.http.get(BATCHES, params={"limit": 2, "before_id": newest_first[3]})).json()
    assert [b["id"] for b in before["data"]] == newest_first[1:3]
    assert before["has_more"] is True
    everything = (await app.http.get(BATCHES)).json()
    assert [b["id"] for b in everything["data"]] == newest_first
    assert everything["has_more"] is False


async def test_list_of_nothing_still_has_every_page_field(app: App) -> None:
    page = (await app.http.get(BATCHES)).json()
    assert page == {"data": [], "has_more": False, "first_id": None, "last_id": None}


async def test_list_refuses_bad_cursors_and_limits(app: App) -> None:
    response = await app.http.get(BATCHES, params={"after_id": "msgbatch_01nope"})
    assert await error_of(response, 404) == "not_found_error: after_id: msgbatch_01nope not found"
    response = await app.http.get(BATCHES, params={"limit": 0})
    assert await error_of(response, 400) == (
        "invalid_request_error: limit: Input should be greater than or equal to 1"
    )


# -- cancel, delete, results --------------------------------------------------------


async def test_cancel_ends_with_canceled_results_for_what_had_not_run(app: App) -> None:
    batch = await app.create(requests_(4))
    cancel = await app.http.post(f"{BATCHES}/{batch['id']}/cancel")
    assert cancel.status_code == 200, cancel.text
    canceling = cancel.json()
    assert canceling["processing_status"] == "canceling"
    assert canceling["cancel_initiated_at"] is not None
    assert canceling["request_counts"]["processing"] == 4
    await app.svc.drain()
    ended = await app.get(batch["id"])
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"] == {
        "processing": 0,
        "succeeded": 0,
        "errored": 0,
        "canceled": 4,
        "expired": 0,
    }
    results = await app.results(batch["id"])
    assert sorted(r["custom_id"] for r in results) == ["r0", "r1", "r2", "r3"]
    assert {json.dumps(r["result"]) for r in results} == {'{"type": "canceled"}'}
    # Canceling again changes nothing.
    again = await app.http.post(f"{BATCHES}/{batch['id']}/cancel")
    assert again.json()["processing_status"] == "ended"


async def test_results_before_the_end_and_delete_before_the_end_are_refused(app: App) -> None:
    batch = await app.create(requests_(1))
    results = await app.http.get(f"{BATCHES}/{batch['id']}/results")
    assert (await error_of(results, 400)).startswith("invalid_request_error: Message Batch ")
    deleted = await app.http.delete(f"{BATCHES}/{batch['id']}")
    assert await error_of(deleted, 400) == (
        f"invalid_request_error: Message Batch {batch['id']} cannot be deleted while it is "
        "in_progress. Cancel it first and delete it once it has ended."
    )
    await app.worker.run_until_idle()
    deleted = await app.http.delete(f"{BATCHES}/{batch['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": batch["id"], "type": "message_batch_deleted"}
    gone = await app.http.get(f"{BATCHES}/{batch['id']}")
    assert gone.status_code == 404
    assert await app.records.state_counts(batch["id"]) == {}


async def test_results_url_uses_the_public_url(tmp_path: Path) -> None:
    settings = batch_settings(tmp_path, public_url="https://parley.example/base/")
    async with started(settings) as app:
        batch = await app.create(requests_(1))
        await app.worker.run_until_idle()
        ended = await app.get(batch["id"])
    assert ended["results_url"] == (
        f"https://parley.example/base/v1/messages/batches/{batch['id']}/results"
    )


async def test_progress_header_counts_finished_requests(app: App) -> None:
    batch = await app.create(requests_(3))
    response = await app.http.get(f"{BATCHES}/{batch['id']}")
    assert response.headers["parley-batch-requests-finished"] == "0"
    await app.worker.run_until_idle()
    response = await app.http.get(f"{BATCHES}/{batch['id']}")
    assert "parley-batch-requests-finished" not in response.headers
