"""A scripted stand-in for Anthropic's Messages API, served in-process: it records the
bodies Parley forwards and answers with a stream that cites the documents it was sent,
as the real API does when citations are enabled (api-spec §5.5, §6.3)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pypdf import PdfReader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.engines.upstream.fake_openai import serve_asgi


@dataclass
class AnthropicState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    counted: list[dict[str, Any]] = field(default_factory=list)


def _frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for message in body["messages"]:
        if isinstance(message["content"], list):
            found += [b for b in message["content"] if b.get("type") == "document"]
    return found


def _first_sentence_citation(doc: dict[str, Any], index: int) -> dict[str, Any]:
    """A citation of the document's first sentence, as the real API would place it."""
    source = doc["source"]
    common = {"document_index": index, "document_title": doc.get("title")}
    if source["type"] == "text":
        text = source["data"]
        end = text.find(".") + 1 or len(text)
        return {
            "type": "char_location",
            "cited_text": text[:end],
            **common,
            "start_char_index": 0,
            "end_char_index": end,
        }
    if source["type"] == "base64":
        reader = PdfReader(io.BytesIO(base64.b64decode(source["data"])))
        page = reader.pages[0].extract_text().strip()
        return {
            "type": "page_location",
            "cited_text": page,
            **common,
            "start_page_number": 1,
            "end_page_number": 2,
        }
    block = source["content"][0]["text"]
    return {
        "type": "content_block_location",
        "cited_text": block,
        **common,
        "start_block_index": 0,
        "end_block_index": 1,
    }


def create_app(state: AnthropicState) -> Starlette:
    async def messages(request: Request) -> Response:
        body = await request.json()
        state.requests.append(body)

        async def events() -> AsyncIterator[bytes]:
            message = {
                "id": "msg_up",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 1},
            }
            yield _frame({"type": "message_start", "message": message})
            index = 0
            yield _frame(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            yield _frame(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": "From the documents: "},
                }
            )
            yield _frame({"type": "content_block_stop", "index": index})
            for n, doc in enumerate(_documents(body)):
                if not (doc.get("citations") or {}).get("enabled"):
                    continue
                index += 1
                citation = _first_sentence_citation(doc, n)
                yield _frame(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": "", "citations": []},
                    }
                )
                yield _frame(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "citations_delta", "citation": citation},
                    }
                )
                yield _frame(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": f"document {n} says so"},
                    }
                )
                yield _frame({"type": "content_block_stop", "index": index})
            yield _frame(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 9},
                }
            )
            yield _frame({"type": "message_stop"})

        return StreamingResponse(events(), media_type="text/event-stream")

    async def count_tokens(request: Request) -> Response:
        state.counted.append(await request.json())
        return JSONResponse({"input_tokens": 11})

    async def models(request: Request) -> Response:
        return JSONResponse({"data": [], "has_more": False, "first_id": None, "last_id": None})

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


@asynccontextmanager
async def serving_anthropic(state: AnthropicState) -> AsyncIterator[str]:
    async with serve_asgi(create_app(state)) as url:
        yield url
