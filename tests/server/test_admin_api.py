"""Admin API: API keys and the messages usage report, in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import ModelConfig, Settings
from parley.core.records import UsageRecord
from parley.services import Services, start_services
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings

KEYS = "/v1/organizations/api_keys"
USAGE = "/v1/organizations/usage_report/messages"
ADMIN_ONLY = "This endpoint requires an admin API key."


@pytest.fixture
async def admin(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    secret = (await services.keys.store.create("root", admin=True)).secret
    async with asgi_client(services, old_sdk_headers(secret)) as http:
        yield http


def assert_error(response: httpx.Response, status: int, error_type: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": response.headers["request-id"],
    }


def message(text: str = "say: one two three") -> dict[str, Any]:
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": text}],
    }


# -- who may call ----------------------------------------------------------------------

ADMIN_CALLS = [
    ("GET", KEYS, None),
    ("GET", f"{KEYS}/apikey_01whatever", None),
    ("POST", f"{KEYS}/apikey_01whatever", {"name": "x"}),
    ("GET", f"{USAGE}?starting_at=2025-01-01T00:00:00Z", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_an_ordinary_key_is_refused_with_permission_error(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, path, json=body)
    assert_error(response, 403, "permission_error", ADMIN_ONLY)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_admin_endpoints_need_a_key_and_the_version_header(
    services: Services, method: str, path: str, body: dict[str, Any] | None
) -> None:
    secret = (await services.keys.store.create("root", admin=True)).secret
    async with asgi_client(services) as bare:
        response = await bare.request(method, path, json=body)
        assert_error(response, 401, "authentication_error", "x-api-key header is required")
        response = await bare.request(method, path, json=body, headers={"x-api-key": secret})
        assert_error(
            response, 400, "invalid_request_error", "anthropic-version: header is required"
        )


async def test_an_admin_key_is_refused_on_the_messages_api(admin: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("POST", "/v1/messages", message()),
        ("POST", "/v1/messages/count_tokens", {"model": SCRIPTED_MODEL, "messages": []}),
        ("GET", "/v1/models", None),
    ]:
        response = await admin.request(method, path, json=body)
        assert_error(response, 401, "authentication_error", "invalid x-api-key")


async def test_an_admin_key_works_as_a_bearer_token(services: Services) -> None:
    secret = (await services.keys.store.create("root", admin=True)).secret
    headers = {"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"}
    async with asgi_client(services, headers) as http:
        assert (await http.get(KEYS)).status_code == 200


# -- API keys --------------------------------------------------------------------------


async def test_list_shape_newest_first(services: Services, admin: httpx.AsyncClient) -> None:
    created = await services.keys.store.create("alice", tier="gold")
    response = await admin.get(KEYS)
    assert response.status_code == 200, response.text
    page = response.json()
    names = [item["name"] for item in page["data"]]
    assert names == ["alice", "root"]
    assert page["has_more"] is False
    assert page["first_id"] == page["data"][0]["id"] == created.key.id
    assert page["last_id"] == page["data"][-1]["id"]
    alice = page["data"][0]
    assert alice == {
        "type": "api_key",
        "id": created.key.id,
        "name": "alice",
        "status": "active",
        "created_at": alice["created_at"],
        "created_by": None,
        "partial_key_hint": created.key.hint,
        "workspace_id": None,
        "scope": {"type": "organization"},
        "principal": None,
        "expires_at": None,
        "tier": "gold",
        "is_admin": False,
        "last_used_at": None,
    }
    assert datetime.fromisoformat(alice["created_at"]) == created.key.created_at
    assert alice["created_at"].endswith("Z")
    # The hint is redacted: never the secret, nor enough of it to matter.
    assert created.secret not in response.text
    assert alice["partial_key_hint"].startswith("sk-parley-")
    assert "..." in alice["partial_key_hint"]
    assert [item["is_admin"] for item in page["data"]] == [False, True]


async def test_list_pages_both_ways(services: Services, admin: httpx.AsyncClient) -> None:
    for n in range(5):
        await services.keys.store.create(f"k{n}")
    everything = (await admin.get(KEYS, params={"limit": 100})).json()["data"]
    ids = [item["id"] for item in everything]
    assert len(ids) == 6  # five and the admin key

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = (await admin.get(KEYS, params=params)).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        params = {"limit": 3, "after_id": page["last_id"]}
    assert seen == ids

    back = (await admin.get(KEYS, params={"limit": 2, "before_id": ids[4]})).json()
    assert [item["id"] for item in back["data"]] == ids[2:4]
    assert back["has_more"] is True
    first = (await admin.get(KEYS, params={"limit": 2, "before_id": ids[2]})).json()
    assert [item["id"] for item in first["data"]] == ids[0:2]
    assert first["has_more"] is False


async def test_list_filters_by_status(services: Services, admin: httpx.AsyncClient) -> None:
    paused = await services.keys.store.create("paused")
    gone = await services.keys.store.create("gone")
    await services.keys.store.update(paused.key.id, status="inactive")
    await services.keys.store.revoke(gone.key.id)

    async def names(status: str) -> list[str]:
        response = await admin.get(KEYS, params={"status": status})
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["data"]]

    assert await names("active") == ["root"]
    assert await names("inactive") == ["paused"]
    assert await names("archived") == ["gone"]
    assert await names("expired") == []
    response = await admin.get(KEYS, params={"status": "deleted"})
    assert_error(
        response,
        400,
        "invalid_request_error",
        "status: Input should be 'active', 'inactive', 'archived' or 'expired'",
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit: Input should be greater than or equal to 1"),
        ({"limit": "1001"}, "limit: Input should be less than or equal to 1000"),
        ({"limit": "x"}, "limit: Input should be a valid integer"),
        (
            {"workspace_id": "wrkspc_01"},
            "workspace_id: Parley does not track this; it cannot filter by it",
        ),
    ],
)
async def test_list_refuses_bad_queries(
    admin: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    assert_error(await admin.get(KEYS, params=params), 400, "invalid_request_error", message)


async def test_list_with_an_unknown_cursor_is_404(admin: httpx.AsyncClient) -> None:
    response = await admin.get(KEYS, params={"after_id": "apikey_01nope"})
    assert_error(response, 404, "not_found_error", "after_id: apikey_01nope not found")


async def test_get_one_key(services: Services, admin: httpx.AsyncClient) -> None:
    created = await services.keys.store.create("alice")
    response = await admin.get(f"{KEYS}/{created.key.id}")
    assert response.status_code == 200, response.text
    listed = (await admin.get(KEYS)).json()["data"][0]
    assert response.json() == listed
    missing = await admin.get(f"{KEYS}/apikey_01nope")
    assert_error(missing, 404, "not_found_error", "api_key_id: apikey_01nope not found")


async def test_last_used_at_is_recorded(
    services: Services, client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    assert (await client.post("/v1/messages", json=message())).status_code == 200
    await services.drain()
    data = (await admin.get(KEYS)).json()["data"]
    used = {item["name"]: item["last_used_at"] for item in data}
    assert used["test"] is not None
    assert datetime.fromisoformat(used["test"]) <= datetime.now(UTC)


async def test_update_name_and_status(
    services: Services, client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    key_id = (await services.keys.store.list())[-1].id  # the fixture's key, used by `client`
    renamed = await admin.post(f"{KEYS}/{key_id}", json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"
    assert renamed.json()["status"] == "active"

    off = await admin.post(f"{KEYS}/{key_id}", json={"status": "inactive"})
    assert off.json()["status"] == "inactive"
    assert off.json()["name"] == "renamed"
    refused = await client.post("/v1/messages", json=message())
    assert_error(refused, 401, "authentication_error", "invalid x-api-key")

    on = await admin.post(f"{KEYS}/{key_id}", json={"status": "active", "name": None})
    assert on.json()["status"] == "active"
    assert on.json()["name"] == "renamed"
    assert (await client.post("/v1/messages", json=message())).status_code == 200

    unchanged = await admin.post(f"{KEYS}/{key_id}")  # SDKs may send an empty body
    assert unchanged.status_code == 200, unchanged.text
    assert {**unchanged.json(), "last_used_at": None} == {**on.json(), "last_used_at": None}


async def test_an_archived_key_stays_archived(
    services: Services, client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    key_id = (await services.keys.store.list())[-1].id
    archived = await admin.post(f"{KEYS}/{key_id}", json={"status": "archived"})
    assert archived.json()["status"] == "archived"
    assert (await client.post("/v1/messages", json=message())).status_code == 401
    for status in ("active", "inactive"):
        response = await admin.post(f"{KEYS}/{key_id}", json={"status": status})
        assert_error(
            response,
            400,
            "invalid_request_error",
            "status: an archived API key cannot be reactivated",
        )
    assert (await admin.get(f"{KEYS}/{key_id}")).json()["status"] == "archived"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "tier": "gold"}, "tier: Extra inputs are not permitted"),
        ({"status": "deleted"}, "status: Input should be 'active', 'inactive' or 'archived'"),
        ({"name": ""}, "name: String should have at least 1 character"),
        ({"name": 5}, "name: Input should be a valid string"),
        ([], "Input should be a valid dictionary or object"),
    ],
)
async def test_update_validates_the_body_strictly(
    services: Services, admin: httpx.AsyncClient, body: Any, message: str
) -> None:
    key_id = (await services.keys.store.list())[-1].id
    response = await admin.post(f"{KEYS}/{key_id}", json=body)
    assert_error(response, 400, "invalid_request_error", message)


async def test_update_an_unknown_key_is_404(admin: httpx.AsyncClient) -> None:
    response = await admin.post(f"{KEYS}/apikey_01nope", json={"name": "x"})
    assert_error(response, 404, "not_found_error", "api_key_id: apikey_01nope not found")


# -- usage report: from real messages ----------------------------------------------------

NOW = datetime(2025, 3, 4, 10, 20, 30, tzinfo=UTC)


@pytest.fixture
async def at_fixed_time(tmp_path: Path) -> AsyncIterator[Services]:
    """Started services whose clock stands still at NOW."""
    svc = await start_services(scripted_settings(tmp_path / "fixed"), clock=NOW.timestamp)
    try:
        yield svc
    finally:
        await svc.aclose()


def result(**counts: Any) -> dict[str, Any]:
    """A usage result with every field; `counts` overrides."""
    base: dict[str, Any] = {
        "uncached_input_tokens": 0,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": None,
        "workspace_id": None,
        "model": None,
        "service_tier": None,
        "context_window": None,
    }
    return {**base, **counts}


def stream_usage(sse: str) -> dict[str, int]:
    """Input tokens from `message_start` and output tokens from the last `message_delta`."""
    usage: dict[str, int] = {}
    for line in sse.splitlines():
        if not line.startswith("data: "):
            continue
        event = json.loads(line[len("data: ") :])
        if event["type"] == "message_start":
            usage["input_tokens"] = event["message"]["usage"]["input_tokens"]
        elif event["type"] == "message_delta":
            usage["output_tokens"] = event["usage"]["output_tokens"]
    return usage


async def test_usage_adds_up_after_messages(at_fixed_time: Services) -> None:
    svc = at_fixed_time
    alice = await svc.keys.store.create("alice")
    bob = await svc.keys.store.create("bob")
    admin_secret = (await svc.keys.store.create("root", admin=True)).secret
    sent: dict[str, list[dict[str, int]]] = {alice.key.id: [], bob.key.id: []}
    for created, texts in [
        (alice, ["say: one two three", "count: 5"]),
        (bob, ["say: hi", "count: 10", "plain words here"]),
    ]:
        async with asgi_client(svc, old_sdk_headers(created.secret)) as http:
            for text in texts:
                response = await http.post("/v1/messages", json=message(text))
                assert response.status_code == 200, response.text
                sent[created.key.id].append(response.json()["usage"])
            stream = await http.post("/v1/messages", json={**message("count: 4"), "stream": True})
            assert stream.status_code == 200
            sent[created.key.id].append(stream_usage(stream.text))
    await svc.drain()

    def sums(key_id: str) -> tuple[int, int]:
        usages = sent[key_id]
        return sum(u["input_tokens"] for u in usages), sum(u["output_tokens"] for u in usages)

    expected = {alice.key.id: sums(alice.key.id), bob.key.id: sums(bob.key.id)}
    assert all(inp > 0 and out > 0 for inp, out in expected.values())
    async with asgi_client(svc, old_sdk_headers(admin_secret)) as admin:
        start = {"starting_at": "2025-03-04T00:00:00Z"}
        total = await report(admin, **start)
        assert total["has_more"] is False
        assert total["next_page"] is None
        [bucket] = total["data"]  # the report ends with the current day
        assert bucket["starting_at"] == "2025-03-04T00:00:00Z"
        assert bucket["ending_at"] == "2025-03-05T00:00:00Z"
        assert bucket["results"] == [
            result(
                uncached_input_tokens=sum(inp for inp, _ in expected.values()),
                output_tokens=sum(out for _, out in expected.values()),
            )
        ]

        by_key = await report(admin, **start, **{"group_by[]": "api_key_id"})
        results = by_key["data"][0]["results"]
        got = {r["api_key_id"]: (r["uncached_input_tokens"], r["output_tokens"]) for r in results}
        assert got == expected
        assert all(r["model"] is None for r in results)

        only_bob = await report(admin, **start, **{"api_key_ids[]": bob.key.id})
        [bob_result] = only_bob["data"][0]["results"]
        assert (bob_result["uncached_input_tokens"], bob_result["output_tokens"]) == expected[
            bob.key.id
        ]

        # The same usage by the minute: all of it in NOW's minute, none in the next.
        minutes = await report(
            admin,
            starting_at="2025-03-04T10:19:00Z",
            ending_at="2025-03-04T10:22:00Z",
            bucket_width="1m",
        )
        assert [len(d["results"]) for d in minutes["data"]] == [0, 1]  # ends at NOW's minute


# -- usage report: buckets, groups and pages over recorded rows ---------------------------


@pytest.fixture
async def recorded(services: Services) -> dict[str, str]:
    """Usage for two keys and two models at known times on 2025-01-01 (UTC)."""
    a = (await services.keys.store.create("a")).key.id
    b = (await services.keys.store.create("b")).key.id

    async def add(key: str, model: str, at: str, inp: int, out: int, **cache: int) -> None:
        when = datetime.fromisoformat(at)
        await services.usage.store.add(
            UsageRecord(key, model, when, input_tokens=inp, output_tokens=out, **cache)
        )

    await add(a, "m1", "2025-01-01T00:05:10Z", 10, 1)
    await add(a, "m1", "2025-01-01T00:05:50Z", 20, 2)  # same minute: one row
    await add(a, "m2", "2025-01-01T00:59:00Z", 30, 3, cache_creation_input_tokens=7)
    await add(b, "m1", "2025-01-01T02:30:00Z", 40, 4, cache_read_input_tokens=9)
    await add(b, "m2", "2025-01-02T12:00:00Z", 50, 5)
    return {"a": a, "b": b}


async def report(admin: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    """The page, less `data_refreshed_at` (checked here: a whole-second UTC time)."""
    response = await admin.get(USAGE, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    refreshed = body.pop("data_refreshed_at")
    assert refreshed.endswith("Z")
    assert datetime.fromisoformat(refreshed).microsecond == 0
    return body


async def test_hour_buckets_keep_empty_ones(
    recorded: dict[str, str], admin: httpx.AsyncClient
) -> None:
    page = await report(
        admin,
        starting_at="2025-01-01T00:00:00Z",
        ending_at="2025-01-01T04:00:00Z",
        bucket_width="1h",
    )
    assert page == {
        "data": [
            {
                "starting_at": "2025-01-01T00:00:00Z",
                "ending_at": "2025-01-01T01:00:00Z",
                "results": [
                    result(
                        uncached_input_tokens=60,
                        output_tokens=6,
                        cache_creation={
                            "ephemeral_1h_input_tokens": 0,
                            "ephemeral_5m_input_tokens": 7,
                        },
                    )
                ],
            },
            {
                "starting_at": "2025-01-01T01:00:00Z",
                "ending_at": "2025-01-01T02:00:00Z",
                "results": [],
            },
            {
                "starting_at": "2025-01-01T02:00:00Z",
                "ending_at": "2025-01-01T03:00:00Z",
                "results": [
                    result(uncached_input_tokens=40, output_tokens=4, cache_read_input_tokens=9)
                ],
            },
            {
                "starting_at": "2025-01-01T03:00:00Z",
                "ending_at": "2025-01-01T04:00:00Z",
                "results": [],
            },
        ],
        "has_more": False,
        "next_page": None,
    }


async def test_group_by_key_and_model(recorded: dict[str, str], admin: httpx.AsyncClient) -> None:
    a, b = recorded["a"], recorded["b"]
    page = await report(
        admin,
        starting_at="2025-01-01T00:00:00Z",
        ending_at="2025-01-03T00:00:00Z",
        **{"group_by[]": ["api_key_id", "model"]},
    )
    day1, day2 = page["data"]
    got = [(r["api_key_id"], r["model"], r["uncached_input_tokens"]) for r in day1["results"]]
    assert got == sorted([(a, "m1", 30), (a, "m2", 30), (b, "m1", 40)])
    assert [(r["api_key_id"], r["model"]) for r in day2["results"]] == [(b, "m2")]

    # Plain repeated `group_by` works too; grouping by model alone merges keys.
    by_model = await admin.get(
        USAGE,
        params=[
            ("starting_at", "2025-01-01T00:00:00Z"),
            ("ending_at", "2025-01-02T00:00:00Z"),
            ("group_by", "model"),
        ],
    )
    [day] = by_model.json()["data"]
    assert [(r["model"], r["api_key_id"], r["uncached_input_tokens"]) for r in day["results"]] == [
        ("m1", None, 70),
        ("m2", None, 30),
    ]


async def test_group_by_dimensions_parley_does_not_track(
    recorded: dict[str, str], admin: httpx.AsyncClient
) -> None:
    page = await report(
        admin,
        starting_at="2025-01-02T00:00:00Z",
        ending_at="2025-01-03T00:00:00Z",
        **{"group_by[]": ["workspace_id", "service_tier", "context_window"]},
    )
    [r] = page["data"][0]["results"]
    assert (r["workspace_id"], r["service_tier"], r["context_window"]) == (
        None,
        "standard",
        "0-200k",
    )
    assert r["uncached_input_tokens"] == 50


async def test_filters_by_model_and_key(recorded: dict[str, str], admin: httpx.AsyncClient) -> None:
    span = {"starting_at": "2025-01-01T00:00:00Z", "ending_at": "2025-01-03T00:00:00Z"}
    page = await report(admin, **span, **{"models[]": "m2"})
    assert [[r["uncached_input_tokens"] for r in d["results"]] for d in page["data"]] == [
        [30],
        [50],
    ]
    page = await report(admin, **span, **{"api_key_ids[]": recorded["a"], "models[]": "m1"})
    assert [[r["uncached_input_tokens"] for r in d["results"]] for d in page["data"]] == [[30], []]


async def test_minute_buckets_and_snapping(
    recorded: dict[str, str], admin: httpx.AsyncClient
) -> None:
    page = await report(
        admin,
        starting_at="2025-01-01T00:04:59.5Z",  # snapped to the start of its minute
        ending_at="2025-01-01T00:06:30Z",  # whole buckets: 00:06 is included
        bucket_width="1m",
    )
    assert [
        (d["starting_at"], [r["uncached_input_tokens"] for r in d["results"]]) for d in page["data"]
    ] == [
        ("2025-01-01T00:04:00Z", []),
        ("2025-01-01T00:05:00Z", [30]),
        ("2025-01-01T00:06:00Z", []),
    ]
    # Offsets other than Z are understood.
    page = await report(
        admin,
        starting_at="2025-01-01T01:05:00+01:00",
        ending_at="2025-01-01T01:06:00+01:00",
        bucket_width="1m",
    )
    assert page["data"][0]["starting_at"] == "2025-01-01T00:05:00Z"


async def test_pages_follow_next_page(recorded: dict[str, str], admin: httpx.AsyncClient) -> None:
    span = {
        "starting_at": "2025-01-01T00:00:00Z",
        "ending_at": "2025-01-02T13:00:00Z",
        "bucket_width": "1h",
    }
    whole = await report(admin, **span, limit=168)
    assert len(whole["data"]) == 37
    assert whole["has_more"] is False

    pages = [await report(admin, **span, limit=10)]
    while pages[-1]["has_more"]:
        token = pages[-1]["next_page"]
        assert token.startswith("page_")
        pages.append(await report(admin, **span, limit=10, page=token))
    assert [len(p["data"]) for p in pages] == [10, 10, 10, 7]
    assert pages[-1]["next_page"] is None
    assert [d for p in pages for d in p["data"]] == whole["data"]


async def test_default_limits_per_bucket_width(
    services: Services, admin: httpx.AsyncClient
) -> None:
    span = {"starting_at": "2025-01-01T00:00:00Z", "ending_at": "2025-03-01T00:00:00Z"}
    for width, default in [("1d", 7), ("1h", 24), ("1m", 60)]:
        page = await report(admin, **span, bucket_width=width)
        assert len(page["data"]) == default
        assert page["has_more"] is True


async def test_without_ending_at_the_report_ends_with_the_current_bucket(
    recorded: dict[str, str], admin: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    page = await report(
        admin, starting_at=(now - timedelta(hours=2)).isoformat(), bucket_width="1h"
    )
    assert len(page["data"]) == 3
    assert page["has_more"] is False
    last = datetime.fromisoformat(page["data"][-1]["starting_at"])
    assert last <= now < last + timedelta(hours=1)
    # A range in the future has nothing to show.
    later = (now + timedelta(days=2)).isoformat()
    assert await report(admin, starting_at=later) == {
        "data": [],
        "has_more": False,
        "next_page": None,
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "starting_at: Field required"),
        (
            {"starting_at": "yesterday"},
            "starting_at: Input should be a valid datetime or date, input is too short",
        ),
        ({"starting_at": "2025-01-01T00:00:00"}, "starting_at: Input should have timezone info"),
        ({"bucket_width": "2h"}, "bucket_width: Input should be '1m', '1h' or '1d'"),
        ({"limit": "32"}, "limit: Input should be less than or equal to 31"),
        (
            {"limit": "169", "bucket_width": "1h"},
            "limit: Input should be less than or equal to 168",
        ),
        (
            {"limit": "1441", "bucket_width": "1m"},
            "limit: Input should be less than or equal to 1440",
        ),
        ({"limit": "0"}, "limit: Input should be greater than or equal to 1"),
        ({"ending_at": "2024-12-31T00:00:00Z"}, "ending_at: must be after starting_at"),
        ({"page": "page_bm9wZQ=="}, "page: Invalid page token"),
        ({"page": "nope"}, "page: Invalid page token"),
        (
            {"group_by[]": "account_id"},
            "group_by.0: Input should be 'api_key_id', 'workspace_id', 'model', "
            "'service_tier' or 'context_window'",
        ),
        (
            {"workspace_ids[]": "wrkspc_01"},
            "workspace_ids: Parley does not track this; it cannot filter by it",
        ),
    ],
)
async def test_usage_report_refuses_bad_queries(
    admin: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    query = {"starting_at": "2025-01-01T00:00:00Z", **params} if params else {}
    response = await admin.get(USAGE, params=query)
    assert_error(response, 400, "invalid_request_error", message)


async def test_limit_at_the_maximum_is_accepted(admin: httpx.AsyncClient) -> None:
    page = await report(
        admin,
        starting_at="2025-01-01T00:00:00Z",
        ending_at="2025-01-02T00:00:00Z",
        bucket_width="1m",
        limit=1440,
    )
    assert len(page["data"]) == 1440
    assert page["has_more"] is False


async def test_models_grouping_with_two_scripted_models(tmp_path: Path) -> None:
    """Two models served at once report apart when grouped by model."""
    second = ModelConfig(id="scripted-2", engine="scripted", context_window=2048, slots=1)
    base: Settings = scripted_settings(tmp_path / "two")
    settings = base.model_copy(update={"models": [*base.models, second]})
    svc = await start_services(settings)
    try:
        user = (await svc.keys.store.create("user")).secret
        admin_secret = (await svc.keys.store.create("root", admin=True)).secret
        async with asgi_client(svc, old_sdk_headers(user)) as http:
            for model in (SCRIPTED_MODEL, "scripted-2", "scripted-2"):
                response = await http.post(
                    "/v1/messages", json={**message("count: 3"), "model": model}
                )
                assert response.status_code == 200, response.text
        await svc.drain()
        start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        async with asgi_client(svc, old_sdk_headers(admin_secret)) as admin:
            page = await report(
                admin, starting_at=start, bucket_width="1d", **{"group_by[]": "model"}
            )
        results = [r for d in page["data"] for r in d["results"]]
        outputs: dict[str, int] = {}
        for r in results:
            outputs[r["model"]] = outputs.get(r["model"], 0) + r["output_tokens"]
        assert outputs == {SCRIPTED_MODEL: 3, "scripted-2": 6}
    finally:
        await svc.aclose()
