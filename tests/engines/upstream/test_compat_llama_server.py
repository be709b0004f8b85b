"""Compatibility row: llama.cpp's `llama-server` (built from the llama.cpp that
llama-cpp-python vendors) on the bundled SmolLM2 GGUF, flavor detected at start.
SmolLM2's template has no tool support (its /props say so), so tools go as text;
calls are forced through `response_format` json_schema; a prefill is continued by
the server itself, which repeats it first (Parley takes it off); it reports cached
prompt tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from parley.engines.openai_compat import OpenAICompatEngine
from tests.conftest import running_app
from tests.engines.upstream.compat_rows import Check, Row, row_checks
from tests.engines.upstream.conftest import openai_model, upstream_settings
from tests.engines.upstream.servers import llama_server

pytestmark = [pytest.mark.model, pytest.mark.e2e]

ROW = Row("llama-server", cache_reads=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(tmp_path_factory.mktemp("llama-server") / "server.log") as url:
        yield url


@pytest.fixture
async def http(server: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    model = openai_model(server, model="smollm2")
    model = model.model_copy(update={"context_window": ROW.parley_context})
    async with running_app(upstream_settings(tmp_path, model)) as (svc, client):
        (backend,) = svc.registry.resolve("up").engine.backends  # type: ignore[attr-defined]
        assert isinstance(backend.engine, OpenAICompatEngine)
        upstream = backend.engine.upstream
        assert upstream.flavor.name == "llama-server"
        assert upstream.flavor.tool_format == "text"
        assert upstream.template is not None
        assert "<|im_start|>" in upstream.template.source
        yield client


@row_checks()
async def test_row(http: httpx.AsyncClient, check: Check) -> None:
    await check(http, ROW)
