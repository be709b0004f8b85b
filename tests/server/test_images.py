"""Image blocks through the HTTP API (api-spec §5.3): a model that reads images, one
that does not, the checks on base64 data, and URL sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.config import ModelConfig
from parley.services import Services
from tests.conftest import SCRIPTED_MODEL, running_app, scripted_settings
from tests.engines.upstream.fake_openai import serve_asgi
from tests.images import gif, image_block, jpeg, png
from tests.server.test_validation import assert_error

VISION = "vision-1"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    models = [
        ModelConfig(id=SCRIPTED_MODEL, engine="scripted", slots=1),
        ModelConfig(id=VISION, engine="scripted", slots=1, images=True),
    ]
    async with running_app(scripted_settings(tmp_path / "data", models=models)) as pair:
        yield pair


def body(*content: Any, model: str = VISION) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": list(content)}],
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


async def reply(http: httpx.AsyncClient, data: dict[str, Any]) -> str:
    response = await http.post("/v1/messages", json=data)
    assert response.status_code == 200, response.text
    answer: str = response.json()["content"][0]["text"]
    return answer


async def test_model_that_reads_images_sees_them(
    app: tuple[Services, httpx.AsyncClient],
) -> None:
    _, http = app
    data = body(
        image_block(png(64, 48), "image/png"),
        image_block(jpeg(10, 20), "image/jpeg"),
        text("What is this?"),
    )
    assert await reply(http, data) == "Echo: [image/png 64x48] [image/jpeg 10x20] What is this?"


async def test_images_count_as_input_tokens(app: tuple[Services, httpx.AsyncClient]) -> None:
    _, http = app

    async def count(*content: Any) -> int:
        data = body(*content)
        del data["max_tokens"]
        response = await http.post("/v1/messages/count_tokens", json=data)
        assert response.status_code == 200, response.text
        tokens: int = response.json()["input_tokens"]
        return tokens

    with_image = await count(image_block(gif(5, 5), "image/gif"), text("hi"))
    assert with_image > await count(text("hi"))
    message = await http.post(
        "/v1/messages", json=body(image_block(gif(5, 5), "image/gif"), text("hi"))
    )
    assert message.json()["usage"]["input_tokens"] == with_image


async def test_images_inside_tool_results(app: tuple[Services, httpx.AsyncClient]) -> None:
    _, http = app
    data = {
        "model": VISION,
        "max_tokens": 64,
        "tools": [{"name": "screenshot", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "tool: screenshot"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [text("done"), image_block(png(2, 3), "image/png")],
                    }
                ],
            },
        ],
    }
    assert await reply(http, data) == "Echo: done [image/png 2x3]"


async def test_text_only_model_refuses_images_by_name(
    app: tuple[Services, httpx.AsyncClient],
) -> None:
    _, http = app
    response = await http.post(
        "/v1/messages",
        json=body(text("look"), image_block(png(4, 4), "image/png"), model=SCRIPTED_MODEL),
    )
    assert_error(
        response,
        400,
        "invalid_request_error",
        f"messages.0.content.1: model {SCRIPTED_MODEL} does not support image input.",
    )


async def test_wrong_media_type(app: tuple[Services, httpx.AsyncClient]) -> None:
    _, http = app
    response = await http.post("/v1/messages", json=body(image_block(png(4, 4), "image/webp")))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.0.content.0.image.source.base64: The image was specified using the "
        "image/webp media type, but the image appears to be a image/png image",
    )


async def test_unlisted_media_type(app: tuple[Services, httpx.AsyncClient]) -> None:
    _, http = app
    response = await http.post("/v1/messages", json=body(image_block(png(4, 4), "image/jpg")))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', "
        "'image/png', 'image/gif' or 'image/webp'",
    )


async def test_too_large(app: tuple[Services, httpx.AsyncClient]) -> None:
    _, http = app
    block = image_block(png(4, 4) + b"\x00" * (4 * 1024 * 1024), "image/png")
    size = len(block["source"]["data"])  # type: ignore[index]
    response = await http.post("/v1/messages", json=body(block))
    assert_error(
        response,
        400,
        "invalid_request_error",
        f"messages.0.content.0.image.source.base64.data: image exceeds 5 MB maximum: "
        f"{size} bytes > 5242880 bytes",
    )


def url_block(url: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "url", "url": url}}


async def test_url_sources_are_refused_unless_enabled(
    app: tuple[Services, httpx.AsyncClient],
) -> None:
    _, http = app
    response = await http.post("/v1/messages", json=body(url_block("http://169.254.169.254/x.png")))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.0.content.0.image.source.url: this server does not fetch images from "
        "URLs; send the image as a base64 source instead",
    )


async def _gif(request: Request) -> Response:
    return Response(gif(7, 9), media_type="image/gif")


async def test_url_sources_when_enabled(tmp_path: Path) -> None:
    models = [ModelConfig(id=VISION, engine="scripted", slots=1, images=True)]
    settings = scripted_settings(
        tmp_path / "data", models=models, image_url_fetch=True, image_url_hosts=["127.0.0.1"]
    )
    images = Starlette(routes=[Route("/a.gif", _gif)])
    async with serve_asgi(images) as url, running_app(settings) as (_, http):
        assert await reply(http, body(url_block(f"{url}/a.gif"))) == "Echo: [image/gif 7x9]"
        response = await http.post("/v1/messages", json=body(url_block("https://other.test/a.gif")))
    assert_error(
        response,
        400,
        "invalid_request_error",
        "messages.0.content.0.image.source.url: images from other.test are not allowed on "
        "this server",
    )


async def test_models_report_image_and_tool_capabilities(
    app: tuple[Services, httpx.AsyncClient],
) -> None:
    _, http = app
    models = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
    assert models[VISION]["capabilities"]["image_input"] == {"supported": True}
    assert models[SCRIPTED_MODEL]["capabilities"]["image_input"] == {"supported": False}
    caps = models[VISION]["capabilities"]
    assert caps["tool_use"] == {"supported": True}
    assert set(caps) >= {
        "batch",
        "citations",
        "code_execution",
        "context_management",
        "effort",
        "image_input",
        "pdf_input",
        "server_tools",
        "structured_outputs",
        "thinking",
    }
    assert set(caps["thinking"]["types"]) == {"adaptive", "enabled", "between_tools", "disabled"}
