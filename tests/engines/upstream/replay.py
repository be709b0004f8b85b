"""A fake OpenAI-compatible server that replays recorded exchanges of a real one (vLLM,
SGLang, Ollama), and checks that the request Parley sends is the one recorded.

A fixture file (tests/engines/upstream/fixtures/SERVER.json) holds what the server answers
on its discovery endpoints (`models`, and `version` for Ollama's `/api/version`)
and named `exchanges`: the request Parley must send (`path`, and `body`, matched as
below) and the server's documented answer (`status` with `chunks` streamed as SSE,
or an error `body`). Bodies match when every key of the recorded one matches (keys
it leaves out may be anything, `absent` keys must not be there); lists match item
by item; `{"$contains": TEXT}` matches a string holding TEXT. A request with
`"stream": false` matches the recorded streamed one without its stream fields, and
gets the chunks as the one `chat.completion` (or raw `text_completion`) that these
servers answer it with.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.engines.upstream.fake_openai import serve_asgi

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(server: str) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads((FIXTURES / f"{server}.json").read_text())
    return fixture


def mismatches(expected: Any, actual: Any, path: str = "body") -> list[str]:
    """Where `actual` differs from the recorded `expected`, one line each."""
    if isinstance(expected, dict) and set(expected) == {"$contains"}:
        if isinstance(actual, str) and expected["$contains"] in actual:
            return []
        return [f"{path}: {actual!r} does not contain {expected['$contains']!r}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += mismatches(value, actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {len(expected)} items, got {actual!r}"]
        problems = []
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            problems += mismatches(want, got, f"{path}.{i}")
        return problems
    if expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def whole_reply(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Recorded chunks as the one reply the server sends when not asked to stream."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    usage: Any = None
    raw = False
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            raw = raw or "text" in choice
            delta = choice.get("delta") or {}
            text.append(choice.get("text") or delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or "")
            for fragment in delta.get("tool_calls") or ():
                call = calls.setdefault(
                    fragment.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = fragment.get("id") or call["id"]
                function = fragment.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    head = {k: chunks[0][k] for k in ("id", "created", "model") if k in chunks[0]}
    if raw:
        choice: dict[str, Any] = {"index": 0, "text": "".join(text), "finish_reason": finish}
        return {**head, "object": "text_completion", "choices": [choice], "usage": usage}
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    choice = {"index": 0, "message": message, "finish_reason": finish}
    reply = {**head, "object": "chat.completion", "choices": [choice]}
    return reply | ({"usage": usage} if usage is not None else {})


@dataclass
class Replay:
    fixture: dict[str, Any]
    # The exchange the next generation request must be; set by the test.
    expect: str | None = None
    problems: list[str] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def check(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self.received.append(body)
        if self.expect is None:
            self.problems.append(f"unexpected request to {path}")
            return None
        exchange: dict[str, Any] = self.fixture["exchanges"][self.expect]
        request = exchange["request"]
        expected = dict(request.get("body", {}))
        absent = list(request.get("absent", ()))
        if body.get("stream") is False and "stream" in expected:
            expected["stream"] = False
            expected.pop("stream_options", None)
            absent.append("stream_options")
        found = [] if path == request["path"] else [f"path: {path} != {request['path']}"]
        found += mismatches(expected, body)
        found += [f"body.{key}: must be absent" for key in absent if key in body]
        self.problems += [f"{self.expect}: {p}" for p in found]
        return None if found else exchange


def create_app(replay: Replay) -> Starlette:
    fixture = replay.fixture

    async def generate(request: Request) -> Response:
        body = await request.json()
        exchange = replay.check(request.url.path, body)
        if exchange is None:
            return JSONResponse({"error": {"message": "not the recorded request"}}, 418)
        answer = exchange["response"]
        if "chunks" not in answer:
            return JSONResponse(answer["body"], status_code=answer["status"])
        if body.get("stream") is False:
            return JSONResponse(whole_reply(answer["chunks"]), status_code=answer["status"])

        async def stream() -> AsyncIterator[bytes]:
            for chunk in answer["chunks"]:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse(fixture["models"])

    async def version(request: Request) -> Response:
        if "version" not in fixture:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse(fixture["version"])

    return Starlette(
        routes=[
            Route("/v1/chat/completions", generate, methods=["POST"]),
            Route("/v1/completions", generate, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/api/version", version, methods=["GET"]),
        ]
    )


@asynccontextmanager
async def replaying(server: str) -> AsyncIterator[tuple[Replay, str]]:
    """The fake for `server`'s fixture on a loopback port; yields it and its /v1 URL."""
    replay = Replay(load_fixture(server))
    async with serve_asgi(create_app(replay)) as url:
        yield replay, f"{url}/v1"
