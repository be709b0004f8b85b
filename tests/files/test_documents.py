"""Document blocks in messages (api-spec §5.3): text, content, base64 PDF, URL and file
sources, read into the prompt alike by every engine and counted as the prompt holds
them; file sources in image blocks; the 2026-10-21 rules."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

from parley.config import ModelConfig
from parley.services import Services
from tests.conftest import (
    SCRIPTED_MODEL,
    asgi_client,
    old_sdk_headers,
    running_app,
    scripted_settings,
)
from tests.images import png
from tests.pdfs import pdf_bytes

PAGES = ("The treaty was signed in 1648.", "The river is 42 km long.", "Nothing else.")


def text_doc(data: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": data},
        **extra,
    }


def pdf_doc(data: bytes, **extra: Any) -> dict[str, Any]:
    source = {
        "type": "base64",
        "media_type": "application/pdf",
        "data": base64.b64encode(data).decode(),
    }
    return {"type": "document", "source": source, **extra}


def body(*content: dict[str, Any] | str, **extra: Any) -> dict[str, Any]:
    blocks = [{"type": "text", "text": c} if isinstance(c, str) else c for c in content]
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": blocks}],
        **extra,
    }


async def reply(client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/messages", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_text_document_reaches_the_prompt_with_title_and_context(
    client: httpx.AsyncClient,
) -> None:
    doc = text_doc("The grass is green.", title="Field notes", context="Written in May.")
    message = await reply(client, body(doc, "What colour is the grass?"))
    echoed = message["content"][0]["text"]
    assert echoed.startswith("Echo: ")
    assert '<document index="1">' in echoed
    assert "<source>Field notes</source>" in echoed
    assert "<document_context>Written in May.</document_context>" in echoed
    assert "The grass is green." in echoed
    assert echoed.endswith("What colour is the grass?")


async def test_count_tokens_counts_documents_as_the_prompt_holds_them(
    client: httpx.AsyncClient,
) -> None:
    for doc in (
        text_doc("The grass is green.", title="Notes"),
        pdf_doc(pdf_bytes(*PAGES), context="A scan"),
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": "Block one."}]},
        },
    ):
        payload = body(doc, "Summarise.")
        counted = (
            await client.post(
                "/v1/messages/count_tokens",
                json={k: v for k, v in payload.items() if k != "max_tokens"},
            )
        ).json()
        without = (
            await client.post(
                "/v1/messages/count_tokens",
                json={
                    "model": SCRIPTED_MODEL,
                    "messages": [{"role": "user", "content": "Summarise."}],
                },
            )
        ).json()
        message = await reply(client, payload)
        assert counted["input_tokens"] == message["usage"]["input_tokens"]
        assert counted["input_tokens"] > without["input_tokens"]


async def test_a_pdf_is_read_page_by_page(client: httpx.AsyncClient) -> None:
    message = await reply(client, body(pdf_doc(pdf_bytes(*PAGES)), "How long is the river?"))
    echoed = message["content"][0]["text"]
    for n, page in enumerate(PAGES, 1):
        assert f'<page number="{n}">\n{page}\n</page>' in echoed


async def test_unreadable_pdfs_are_clean_400s(client: httpx.AsyncClient) -> None:
    cases = [
        (
            pdf_doc(b"<html>not a pdf</html>"),
            "messages.0.content.0.pdf.source.base64.data: The PDF specified was not valid.",
        ),
        (
            pdf_doc(b"%PDF-1.7\n garbage that is no pdf"),
            "messages.0.content.0.pdf.source.base64.data: The PDF specified was not valid.",
        ),
        (pdf_doc(b""), "messages.0.content.0.pdf.source.base64.data: PDF cannot be empty"),
        (
            pdf_doc(pdf_bytes(*["p"] * 101)),
            "messages.0.content.0.pdf.source.base64.data: "
            "A maximum of 100 PDF pages may be provided.",
        ),
    ]
    for doc, message in cases:
        response = await client.post("/v1/messages", json=body(doc, "Read it."))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


async def test_a_text_source_must_be_text_plain(client: httpx.AsyncClient) -> None:
    doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/html", "data": "<p>x</p>"},
    }
    response = await client.post("/v1/messages", json=body(doc, "Read it."))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "messages.0.content.0.document.source.text.media_type: Input should be 'text/plain'"
    )


async def test_documents_in_assistant_turns_by_version(services: Services, api_key: str) -> None:
    messages = [
        {"role": "user", "content": "Here."},
        {"role": "assistant", "content": [text_doc("An old note.")]},
        {"role": "user", "content": "And?"},
    ]
    payload = {"model": SCRIPTED_MODEL, "max_tokens": 50, "messages": messages}
    async with asgi_client(services, old_sdk_headers(api_key)) as old:
        assert (await old.post("/v1/messages", json=payload)).status_code == 200
    new_headers = {"authorization": f"Bearer {api_key}", "anthropic-version": "2026-10-21"}
    async with asgi_client(services, new_headers) as new:
        refused = await new.post("/v1/messages", json=payload)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"].startswith(
            "messages.1.content.0: document blocks are not allowed in assistant messages"
        )
        cited = {"type": "text", "text": "x", "citations": [{"type": "char_location"}]}
        user_citations = {
            "model": SCRIPTED_MODEL,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [cited]}],
        }
        response = await new.post("/v1/messages", json=user_citations)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(
            "messages.0.content.0.text.citations:"
        )


async def test_url_documents_follow_the_image_url_switch(client: httpx.AsyncClient) -> None:
    doc = {"type": "document", "source": {"type": "url", "url": "https://docs.example/a.pdf"}}
    response = await client.post("/v1/messages", json=body(doc, "Read it."))
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        "messages.0.content.0.document.source.url: this server does not fetch documents from URLs"
    )


async def upload(http: httpx.AsyncClient, content: bytes, name: str, mime: str) -> str:
    response = await http.post("/v1/files", files={"file": (name, content, mime)})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def test_file_sources_in_document_and_image_blocks(tmp_path: Path) -> None:
    model = ModelConfig(id="seeing", engine="scripted", images=True, context_window=4096)
    async with running_app(scripted_settings(tmp_path / "data", models=[model])) as (svc, http):
        pdf_id = await upload(http, pdf_bytes(*PAGES), "treaty.pdf", "application/pdf")
        text_id = await upload(http, b"Plain words here.", "a.txt", "text/plain")
        image_id = await upload(http, png(64, 48), "pic.png", "image/png")
        content = [
            {"type": "document", "source": {"type": "file", "file_id": pdf_id}},
            {"type": "document", "source": {"type": "file", "file_id": text_id}, "title": "A"},
            {"type": "image", "source": {"type": "file", "file_id": image_id}},
            {"type": "text", "text": "Describe."},
        ]
        payload = {
            "model": "seeing",
            "max_tokens": 400,
            "messages": [{"role": "user", "content": content}],
        }
        echoed = (await reply(http, payload))["content"][0]["text"]
        assert PAGES[1] in echoed
        assert "Plain words here." in echoed
        assert "[image/png 64x48]" in echoed

        wrong = [
            {"type": "document", "source": {"type": "file", "file_id": image_id}},
            {"type": "text", "text": "x"},
        ]
        response = await http.post(
            "/v1/messages", json={**payload, "messages": [{"role": "user", "content": wrong}]}
        )
        assert response.status_code == 400
        assert response.json()["error"]["message"] == (
            f"messages.0.content.0.document.source.file: File {image_id} has type image/png, "
            "which cannot be used in a document block"
        )

        other = (await svc.keys.store.create("other")).secret
        await http.delete(f"/v1/files/{text_id}")
        async with asgi_client(svc, old_sdk_headers(other)) as them:
            for client, missing in ((them, pdf_id), (http, text_id)):
                block = {"type": "document", "source": {"type": "file", "file_id": missing}}
                refused = await client.post(
                    "/v1/messages",
                    json={
                        **payload,
                        "messages": [
                            {"role": "user", "content": [block, {"type": "text", "text": "x"}]}
                        ],
                    },
                )
                assert refused.status_code == 400
                assert refused.json()["error"]["message"] == (
                    f"messages.0.content.0.document.source.file: File not found: {missing}"
                )
