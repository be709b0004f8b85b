"""GET /v1/models and GET /v1/models/{model_id} (api-spec §9, §10; api-version §19.14)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import ModelConfig
from tests.conftest import SCRIPTED_MODEL, running_app, scripted_settings

# Five models, created on different days; the listing is newest first (§9).
NEWEST_FIRST = ["m-epsilon", "m-delta", "m-gamma", "m-beta", "m-alpha"]


def many_models() -> list[ModelConfig]:
    days = {"m-alpha": 1, "m-beta": 2, "m-gamma": 3, "m-delta": 4, "m-epsilon": 5}
    # Declared in an order that is neither by date nor by name.
    return [
        ModelConfig(
            id=model_id,
            aliases=[f"{model_id}-latest"],
            engine="scripted",
            display_name=model_id.upper(),
            created_at=f"2025-01-0{day}T00:00:00Z",
            context_window=1000 * day,
            max_output_tokens=100 * day,
            slots=1,
        )
        for model_id, day in sorted(days.items(), key=lambda kv: kv[0][-2:])
    ]


@pytest.fixture
async def catalogue(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = scripted_settings(tmp_path / "many", models=many_models())
    async with running_app(settings) as (_, http):
        yield http


async def get_page(http: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    response = await http.get("/v1/models", params=query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    page: dict[str, Any] = response.json()
    # Always present, even on an empty page (§10, §18.5).
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [m["id"] for m in page["data"]]


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    message: str = body["error"]["message"]
    return message


async def test_list_shape(client: httpx.AsyncClient) -> None:
    page = await get_page(client)
    assert page["has_more"] is False
    assert page["first_id"] == page["last_id"] == SCRIPTED_MODEL
    (model,) = page["data"]
    assert model["type"] == "model"
    assert model["id"] == SCRIPTED_MODEL
    assert model["display_name"] == "Scripted"
    assert model["created_at"] == "2024-11-01T00:00:00Z"
    assert model["max_input_tokens"] == 2048
    assert model["max_tokens"] == 1024
    assert model["lifecycle"] == "active"
    assert model["capabilities"]["image_input"] == {"supported": False}


async def test_list_is_newest_first(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue)
    assert ids(page) == NEWEST_FIRST
    assert page["has_more"] is False
    assert page["first_id"] == "m-epsilon"
    assert page["last_id"] == "m-alpha"
    created = [m["created_at"] for m in page["data"]]
    assert created == sorted(created, reverse=True)


async def test_limit(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue, limit=2)
    assert ids(page) == ["m-epsilon", "m-delta"]
    assert page["has_more"] is True
    assert page["first_id"] == "m-epsilon"
    assert page["last_id"] == "m-delta"


async def test_limit_equal_to_the_total(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue, limit=5)
    assert ids(page) == NEWEST_FIRST
    assert page["has_more"] is False


async def test_after_id(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue, limit=2, after_id="m-delta")
    assert ids(page) == ["m-gamma", "m-beta"]
    assert page["has_more"] is True
    page = await get_page(catalogue, limit=2, after_id="m-beta")
    assert ids(page) == ["m-alpha"]
    assert page["has_more"] is False


async def test_after_the_last_id_is_an_empty_page(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue, after_id="m-alpha")
    assert page == {"data": [], "has_more": False, "first_id": None, "last_id": None}


async def test_before_id(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue, limit=2, before_id="m-alpha")
    assert ids(page) == ["m-gamma", "m-beta"]
    assert page["has_more"] is True
    page = await get_page(catalogue, limit=2, before_id="m-gamma")
    assert ids(page) == ["m-epsilon", "m-delta"]
    assert page["has_more"] is False


async def test_before_the_first_id_is_an_empty_page(catalogue: httpx.AsyncClient) -> None:
    page = await get_page(catalogue, before_id="m-epsilon")
    assert page == {"data": [], "has_more": False, "first_id": None, "last_id": None}


async def test_paging_forward_like_the_sdks(catalogue: httpx.AsyncClient) -> None:
    # The SDKs ask for `after_id=<last_id>` until has_more is false (§10).
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 2}
    while True:
        page = await get_page(catalogue, **query)
        seen += ids(page)
        if not page["has_more"]:
            break
        query["after_id"] = page["last_id"]
    assert seen == NEWEST_FIRST


async def test_paging_backward_like_the_sdks(catalogue: httpx.AsyncClient) -> None:
    # With before_id, the SDKs ask for `before_id=<first_id>` next (§10).
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 2, "before_id": "m-alpha"}
    while True:
        page = await get_page(catalogue, **query)
        seen = ids(page) + seen
        if not page["has_more"]:
            break
        query["before_id"] = page["first_id"]
    assert seen == NEWEST_FIRST[:-1]


@pytest.mark.parametrize("limit", ["0", "1001", "-3", "many"])
async def test_bad_limit(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/v1/models", params={"limit": limit})
    message = assert_error(response, 400, "invalid_request_error")
    assert message.startswith("limit: ")


@pytest.mark.parametrize("limit", ["1", "1000"])
async def test_limit_bounds_are_allowed(client: httpx.AsyncClient, limit: str) -> None:
    page = await get_page(client, limit=limit)
    assert ids(page) == [SCRIPTED_MODEL]


async def test_lifecycle_filter(catalogue: httpx.AsyncClient) -> None:
    # Without a filter the list holds active and deprecated models; retired only on request.
    assert ids(await get_page(catalogue, **{"lifecycle[]": "active"})) == NEWEST_FIRST
    assert ids(await get_page(catalogue, **{"lifecycle[]": "retired"})) == []
    assert ids(await get_page(catalogue, lifecycle="active")) == NEWEST_FIRST


async def test_get_by_id(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/models/{SCRIPTED_MODEL}")
    assert response.status_code == 200, response.text
    listed = (await get_page(client))["data"][0]
    assert response.json() == listed


async def test_get_by_alias_returns_the_resolved_model(client: httpx.AsyncClient) -> None:
    by_alias = await client.get("/v1/models/scripted")
    by_id = await client.get(f"/v1/models/{SCRIPTED_MODEL}")
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json()["id"] == SCRIPTED_MODEL
    assert by_alias.json() == by_id.json()


async def test_get_each_model(catalogue: httpx.AsyncClient) -> None:
    for index, model_id in enumerate(reversed(NEWEST_FIRST), start=1):
        response = await catalogue.get(f"/v1/models/{model_id}-latest")
        assert response.status_code == 200, response.text
        info = response.json()
        assert info["id"] == model_id
        assert info["display_name"] == model_id.upper()
        assert info["max_input_tokens"] == 1000 * index
        assert info["max_tokens"] == 100 * index


@pytest.mark.parametrize("name", ["nope", "scripted-2", "SCRIPTED-1"])
async def test_get_unknown(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/v1/models/{name}")
    assert assert_error(response, 404, "not_found_error") == f"model: {name}"
