"""Citations (api-spec §5.5, §6.3): the scripted engine's `cite:` quotes a span of a
document, and the answer carries a citation whose `cited_text` is the document's own
text at the indexes it gives, in plain and streamed responses alike. Engines that
cannot cite refuse documents that ask for citations."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import httpx
import httpx2

from parley.core.citations import find_citation
from parley.core.generation import DocumentPart
from parley.server.app import create_app
from parley.services import Services
from tests.conftest import SCRIPTED_MODEL
from tests.pdfs import pdf_bytes

TEXT = "The grass is green. The sky is blue. Water is wet."
PAGES = ("The treaty was signed in 1648.", "The river is 42 km long.", "Nothing else.")
BLOCKS = ("First block.", "Second block says hello.", "Third block.")


def documents() -> list[dict[str, Any]]:
    pdf = base64.b64encode(pdf_bytes(*PAGES)).decode()
    return [
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": TEXT},
            "title": "Facts",
            "citations": {"enabled": True},
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
            "citations": {"enabled": True},
        },
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": b} for b in BLOCKS]},
            "title": "Blocks",
            "citations": {"enabled": True},
        },
    ]


PROMPT = "say: Here is what I found.\ncite: The sky is blue.\ncite: 42 km\ncite: says hello"


def request(**extra: Any) -> dict[str, Any]:
    content = [*documents(), {"type": "text", "text": PROMPT}]
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def check_blocks(content: list[dict[str, Any]]) -> None:
    assert content[0]["text"] == "Here is what I found."
    assert content[0].get("citations") is None
    char, page, block = (c["citations"] for c in content[1:])
    assert [c["text"] for c in content[1:]] == ["The sky is blue.", "42 km", "says hello"]
    assert char == [
        {
            "type": "char_location",
            "cited_text": "The sky is blue.",
            "document_index": 0,
            "document_title": "Facts",
            "start_char_index": 20,
            "end_char_index": 36,
            "file_id": None,
        }
    ]
    assert TEXT[20:36] == char[0]["cited_text"]
    assert page[0]["type"] == "page_location"
    assert (
        page[0]["document_index"],
        page[0]["start_page_number"],
        page[0]["end_page_number"],
    ) == (1, 2, 3)
    assert page[0]["cited_text"] in PAGES[page[0]["start_page_number"] - 1]
    assert block[0]["type"] == "content_block_location"
    assert (block[0]["start_block_index"], block[0]["end_block_index"]) == (1, 2)
    assert block[0]["cited_text"] == BLOCKS[1]


async def test_plain_response_carries_citations(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=request())
    assert response.status_code == 200, response.text
    check_blocks(response.json()["content"])


async def test_streamed_citations_accumulate_in_the_sdk(services: Services, api_key: str) -> None:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(services)))
    async with anthropic.AsyncAnthropic(
        api_key=api_key, base_url="http://parley.test", http_client=http
    ) as sdk:
        seen: list[str] = []
        async with sdk.messages.stream(**request()) as stream:
            async for event in stream:
                if event.type == "citation":
                    seen.append(event.citation.type)
            final = await stream.get_final_message()
    assert seen == ["char_location", "page_location", "content_block_location"]
    check_blocks([b.model_dump(mode="json", exclude_none=False) for b in final.content])


async def test_raw_stream_sends_citations_delta_first_in_its_block(
    client: httpx.AsyncClient,
) -> None:
    async with client.stream("POST", "/v1/messages", json=request(stream=True)) as response:
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    deltas = [line for line in lines if '"citations_delta"' in line]
    assert len(deltas) == 3
    assert '"index":1,"delta":{"type":"citations_delta"' in lines[lines.index(deltas[0])].replace(
        " ", ""
    )


async def test_a_quote_that_no_document_holds_is_a_400(client: httpx.AsyncClient) -> None:
    payload = request()
    payload["messages"][0]["content"][-1]["text"] = "cite: Not in any document"
    response = await client.post("/v1/messages", json=payload)
    assert response.status_code == 400


def test_citations_need_documents_that_allow_them() -> None:
    closed = DocumentPart("text", (TEXT,), 0, citations=False)
    open_ = DocumentPart("text", ("The sky is blue, again.",), 1, citations=True)
    found = find_citation((closed, open_), "The sky is blue")
    assert found is not None
    assert found.document_index == 1
    assert found.start == 0
