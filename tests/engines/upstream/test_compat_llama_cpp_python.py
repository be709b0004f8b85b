"""Compatibility row: llama-cpp-python's own server (`python -m llama_cpp.server`) on
the bundled SmolLM2 GGUF, flavor detected at start. Its chat endpoint neither parses
tool calls nor continues a final assistant message; Parley writes tools as text,
forces calls through its `response_format` schema, and continues a prefill through
`/v1/completions` with the model's own chat template (configured: the server does
not expose it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from parley.engines.openai_compat import OpenAICompatEngine
from tests.conftest import running_app
from tests.engines.upstream.compat_rows import Check, Row, row_checks
from tests.engines.upstream.conftest import openai_model, upstream_settings
from tests.engines.upstream.servers import bundled_chat_template, llama_cpp_python_server

pytestmark = [pytest.mark.model, pytest.mark.e2e]

# Its streams end without a word when a prompt does not fit (the error is raised
# inside the stream), so Parley's window is set to the server's and refuses first.
ROW = Row("llama-cpp-python", parley_context=2048)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_cpp_python_server(tmp_path_factory.mktemp("lcp") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_chat_template(tmp_path_factory.mktemp("template") / "smollm2.jinja")


@pytest.fixture
async def http(server: str, template: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    model = openai_model(server, model="smollm2", chat_template=str(template))
    model = model.model_copy(update={"context_window": ROW.parley_context})
    async with running_app(upstream_settings(tmp_path, model)) as (svc, client):
        (backend,) = svc.registry.resolve("up").engine.backends  # type: ignore[attr-defined]
        assert isinstance(backend.engine, OpenAICompatEngine)
        assert backend.engine.upstream.flavor.name == "llama-cpp-python"
        yield client


@row_checks()
async def test_row(http: httpx.AsyncClient, check: Check) -> None:
    await check(http, ROW)


async def test_prefill_refused_without_a_template(server: str, tmp_path: Path) -> None:
    model = openai_model(server, model="smollm2")
    async with running_app(upstream_settings(tmp_path, model)) as (_, http):
        response = await http.post(
            "/v1/messages",
            json={
                "model": "up",
                "max_tokens": 8,
                "messages": [
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "The colour is"},
                ],
            },
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "up does not support assistant message prefill. "
        "The conversation must end with a user message."
    )
