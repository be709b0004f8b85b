"""Documents on the real embedded model (SmolLM2 135M through llama.cpp): a text
document and a PDF uploaded through the Files API are read into the prompt, and the
greedy answer uses what only the document says. Token counts include the documents
exactly as the prompt holds them; citations are refused (the model cannot cite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.pdfs import pdf_bytes
from tests.serverproc import ParleyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.model]

MODEL = "smollm2"
TEXT_DOC = {
    "type": "document",
    "source": {
        "type": "text",
        "media_type": "text/plain",
        "data": "The secret password is PARROT.",
    },
    "title": "Notes",
}


@pytest.fixture(scope="module")
def http(model_server: ParleyProcess) -> Iterator[httpx.Client]:
    # 2023-06-01, so that `temperature: 0` (greedy, repeatable) may be sent.
    headers = {"x-api-key": model_server.api_key, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=model_server.base_url, headers=headers, timeout=300) as client:
        yield client


def ask(http: httpx.Client, document: dict[str, Any], question: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": [document, {"type": "text", "text": question}]}]
    response = http.post(
        "/v1/messages",
        json={"model": MODEL, "max_tokens": 12, "temperature": 0, "messages": messages},
    )
    assert response.status_code == 200, response.text
    counted = http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": messages})
    message: dict[str, Any] = response.json()
    assert counted.json()["input_tokens"] == message["usage"]["input_tokens"]
    return message


def test_a_text_document_is_read(http: httpx.Client) -> None:
    message = ask(http, TEXT_DOC, "What is the secret password?")
    assert "PARROT" in message["content"][0]["text"]


def test_an_uploaded_pdf_is_read(model_server: ParleyProcess, http: httpx.Client) -> None:
    with anthropic.Anthropic(
        base_url=model_server.base_url, api_key=model_server.api_key, max_retries=0
    ) as sdk:
        pdf = pdf_bytes("Welcome to the manual.", "The capital of Zorbia is Quillton.")
        meta = sdk.beta.files.upload(file=("manual.pdf", pdf, "application/pdf"))
        try:
            document = {"type": "document", "source": {"type": "file", "file_id": meta.id}}
            message = ask(http, document, "What is the capital of Zorbia?")
            assert "Quillton" in message["content"][0]["text"]
        finally:
            sdk.beta.files.delete(meta.id)


def test_citations_are_refused(http: httpx.Client) -> None:
    cited = {**TEXT_DOC, "citations": {"enabled": True}}
    messages = [{"role": "user", "content": [cited, {"type": "text", "text": "Cite it."}]}]
    response = http.post(
        "/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": messages}
    )
    assert response.status_code == 400
    assert "does not support citations" in response.json()["error"]["message"]
    capabilities = http.get(f"/v1/models/{MODEL}").json()["capabilities"]
    assert capabilities["citations"] == {"supported": False}
    assert capabilities["pdf_input"] == {"supported": True}
