"""The pages Parley serves (routes/web.py): where they live and how they are sent."""

from __future__ import annotations

import httpx


async def test_root_links_the_pages_and_answers_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.json()["links"] == {"workbench": "/workbench/", "haiku": "/apps/haiku/"}
    assert (await client.head("/")).status_code == 200


async def test_pages_redirect_to_their_directory(client: httpx.AsyncClient) -> None:
    for path in ("/workbench", "/apps/haiku"):
        response = await client.get(path)
        assert response.status_code == 307, path
        assert response.headers["location"].endswith(path + "/")


async def test_pages_and_modules_are_served(client: httpx.AsyncClient) -> None:
    for path, kind in [
        ("/workbench/", "text/html"),
        ("/workbench/workbench.js", "javascript"),
        ("/apps/haiku/", "text/html"),
        ("/apps/haiku/haiku.js", "javascript"),
        ("/shared/api.js", "javascript"),
        ("/shared/base.css", "text/css"),
    ]:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path
        assert response.headers["cache-control"] == "no-cache"


async def test_pages_need_no_key_and_no_cors_opt_in(services: object) -> None:
    from parley.services import Services
    from tests.conftest import asgi_client

    assert isinstance(services, Services)
    async with asgi_client(services) as anonymous:
        response = await anonymous.get("/workbench/", headers={"origin": "http://elsewhere.test"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_unknown_asset_is_the_api_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/workbench/missing.js")
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "Not found"}


async def test_pages_use_no_outside_resources(client: httpx.AsyncClient) -> None:
    """Offline by construction: no CDN, no external fonts, no absolute URLs in assets."""
    for path in (
        "/workbench/",
        "/workbench/workbench.css",
        "/apps/haiku/",
        "/apps/haiku/haiku.css",
        "/shared/base.css",
    ):
        text = (await client.get(path)).text
        for outside in ("http://", "https://", "@import", "url("):
            assert outside not in text, (path, outside)
