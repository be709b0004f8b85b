"""Documents through an Anthropic upstream (a recording test double): Parley sends
every document inline (a `file_id` names a file in Parley's store, which the upstream
does not know), keeps title, context and citations, and relays the upstream's
citations, naming the file a cited document came from."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from parley.config import ModelConfig
from tests.conftest import running_app, scripted_settings
from tests.engines.upstream.fake_anthropic import AnthropicState, serving_anthropic
from tests.pdfs import pdf_bytes

PDF = pdf_bytes("The treaty was signed in 1648.", "Second page.")


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[AnthropicState, str]]:
    state = AnthropicState()
    async with serving_anthropic(state) as url:
        yield state, url


def claude(url: str) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": "claude-up",
            "context_window": 8192,
            "max_output_tokens": 512,
            "backends": [
                {"engine": "anthropic", "base_url": url, "model": "claude-real", "api_key": "sk-up"}
            ],
        }
    )


def request(file_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-up",
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "file", "file_id": file_id},
                        "title": "Treaty",
                        "context": "A scan from the archive.",
                        "citations": {"enabled": True},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "text",
                            "media_type": "text/plain",
                            "data": "Rivers flow. Seas do not.",
                        },
                        "citations": {"enabled": True},
                    },
                    {"type": "text", "text": "When was it signed?"},
                ],
            }
        ],
        **extra,
    }


async def test_file_documents_go_inline_and_citations_come_back(
    tmp_path: Path, upstream: tuple[AnthropicState, str]
) -> None:
    state, url = upstream
    async with running_app(scripted_settings(tmp_path / "data", models=[claude(url)])) as (_, http):
        uploaded = await http.post("/v1/files", files={"file": ("t.pdf", PDF, "application/pdf")})
        file_id = uploaded.json()["id"]
        response = await http.post("/v1/messages", json=request(file_id))
        assert response.status_code == 200, response.text

        [sent] = state.requests
        assert sent["model"] == "claude-real"
        forwarded = sent["messages"][0]["content"]
        assert forwarded[0] == {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "application/pdf",
                "data": base64.b64encode(PDF).decode(),
            },
            "title": "Treaty",
            "context": "A scan from the archive.",
            "citations": {"enabled": True},
        }
        assert forwarded[1]["source"] == {
            "type": "text",
            "media_type": "text/plain",
            "data": "Rivers flow. Seas do not.",
        }
        assert file_id not in str(sent)

        content = response.json()["content"]
        assert content[0] == {"type": "text", "text": "From the documents: "}
        page, char = content[1]["citations"][0], content[2]["citations"][0]
        assert page == {
            "type": "page_location",
            "cited_text": "The treaty was signed in 1648.",
            "document_index": 0,
            "document_title": "Treaty",
            "start_page_number": 1,
            "end_page_number": 2,
            "file_id": file_id,
        }
        assert (char["type"], char["cited_text"], char["file_id"]) == (
            "char_location",
            "Rivers flow.",
            None,
        )

        counted = await http.post(
            "/v1/messages/count_tokens",
            json={k: v for k, v in request(file_id).items() if k != "max_tokens"},
        )
        assert counted.json() == {"input_tokens": 11}
        assert state.counted[0]["messages"][0]["content"][0]["source"]["type"] == "base64"


async def test_citations_stream_through(
    tmp_path: Path, upstream: tuple[AnthropicState, str]
) -> None:
    _, url = upstream
    async with running_app(scripted_settings(tmp_path / "data", models=[claude(url)])) as (_, http):
        uploaded = await http.post("/v1/files", files={"file": ("t.pdf", PDF, "application/pdf")})
        file_id = uploaded.json()["id"]
        async with http.stream(
            "POST", "/v1/messages", json=request(file_id, stream=True)
        ) as response:
            data = [
                json.loads(line.removeprefix("data: "))
                async for line in response.aiter_lines()
                if line.startswith("data: ")
            ]
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    citations = [d["citation"] for d in deltas if d["type"] == "citations_delta"]
    assert [(c["type"], c["file_id"]) for c in citations] == [
        ("page_location", file_id),
        ("char_location", None),
    ]
    assert [d["index"] for d in data if d["type"] == "content_block_start"] == [0, 1, 2]
    assert data[-1]["type"] == "message_stop"
