"""Document blocks with a URL source: fetched by the image URL fetcher under the same
switch and host list, injected into core as its `DocumentFetch`, read as PDFs."""

from __future__ import annotations

import httpx
import pytest

from parley.core.conversation import Sources, generation_request
from parley.core.generation import DocumentPart, EngineCapabilities
from parley.errors import InvalidRequestError
from parley.pipeline.image_urls import ImageFetcher, ImageFetchPolicy
from parley.protocol.requests import MessageCreateParams
from tests.pdfs import pdf_bytes

PDF = pdf_bytes("Fetched page one.", "Fetched page two.")


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/paper.pdf":
        return httpx.Response(200, content=PDF)
    if request.url.path == "/moved.pdf":
        return httpx.Response(302, headers={"location": "http://evil.test/paper.pdf"})
    if request.url.path == "/page.html":
        return httpx.Response(200, content=b"<html>no pdf</html>")
    return httpx.Response(404)


def params(url: str) -> MessageCreateParams:
    document = {"type": "document", "source": {"type": "url", "url": url}}
    return MessageCreateParams.model_validate(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [document, {"type": "text", "text": "Hi"}]}],
        }
    )


def sources(*hosts: str) -> Sources:
    policy = ImageFetchPolicy(enabled=True, allowed_hosts=hosts, max_document_bytes=len(PDF))
    fetcher = ImageFetcher(policy, httpx.MockTransport(handler))
    return Sources(images=fetcher, documents=fetcher)


async def test_a_pdf_url_is_fetched_and_read() -> None:
    request = await generation_request(
        params("https://docs.test/paper.pdf"), EngineCapabilities(), sources("docs.test")
    )
    [document] = request.documents
    assert isinstance(document, DocumentPart)
    assert document.kind == "pdf"
    assert document.chunks == ("Fetched page one.", "Fetched page two.")
    assert document.pdf == PDF


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://other.test/paper.pdf",
            "documents from other.test are not allowed on this server",
        ),
        ("https://docs.test/moved.pdf", "documents from evil.test are not allowed on this server"),
        ("https://docs.test/page.html", "The PDF specified was not valid."),
        ("https://docs.test/missing.pdf", "Unable to download the file."),
        ("file:///etc/passwd", "only http and https document URLs are supported"),
    ],
)
async def test_refusals(url: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await generation_request(params(url), EngineCapabilities(), sources("docs.test"))
    assert caught.value.message.startswith("messages.0.content.0.document.source.url: ")
    assert message in caught.value.message


async def test_the_document_cap_holds() -> None:
    policy = ImageFetchPolicy(enabled=True, allowed_hosts=("docs.test",), max_document_bytes=100)
    fetcher = ImageFetcher(policy, httpx.MockTransport(handler))
    with pytest.raises(InvalidRequestError) as caught:
        await generation_request(
            params("https://docs.test/paper.pdf"),
            EngineCapabilities(),
            Sources(documents=fetcher),
        )
    assert "document exceeds this server's 100 byte limit for document URLs" in caught.value.message
