"""What each engine says it reads, and the refusal of citations where an engine cannot
give them: `/v1/models` and the Messages API agree (design: every field honoured or
refused)."""

from __future__ import annotations

from pathlib import Path

from parley.config import ModelConfig
from tests.conftest import running_app, scripted_settings

CITED = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
    "citations": {"enabled": True},
}


async def test_citations_are_refused_by_an_engine_that_cannot_cite(tmp_path: Path) -> None:
    # An OpenAI-compatible upstream never answers with citations; the request is
    # refused before anything is sent to it (nothing listens at this address).
    openai = ModelConfig.model_validate(
        {
            "id": "vllm-model",
            "context_window": 4096,
            "backends": [{"engine": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}],
        }
    )
    async with running_app(scripted_settings(tmp_path / "data", models=[openai])) as (_, http):
        info = (await http.get("/v1/models/vllm-model")).json()["capabilities"]
        assert info["citations"] == {"supported": False}
        assert info["pdf_input"] == {"supported": True}
        body = {
            "model": "vllm-model",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": [CITED, {"type": "text", "text": "Cite."}]}],
        }
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            payload = (
                body
                if path == "/v1/messages"
                else {k: v for k, v in body.items() if k != "max_tokens"}
            )
            response = await http.post(path, json=payload)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["message"].startswith(
                "messages.0.content.0.document.citations: model vllm-model does not support "
                "citations"
            )


async def test_the_scripted_engine_cites(tmp_path: Path) -> None:
    async with running_app(scripted_settings(tmp_path / "data")) as (_, http):
        info = (await http.get("/v1/models/scripted-1")).json()["capabilities"]
        assert info["citations"] == {"supported": True}
        assert info["pdf_input"] == {"supported": True}
