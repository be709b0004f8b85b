"""A scripted OpenAI-compatible Chat Completions server, for tests and bench/gateway.py.

The last user message steers it, one directive a line:

- ``say: TEXT``: reply TEXT, one word a chunk (default: ``Hello from NAME``).
- ``status: CODE``: answer that HTTP error (429 comes with ``retry-after: 7``).
- ``headers_delay: S``: wait S seconds before the response headers.
- ``prefill_delay: S``: send the headers, then wait S seconds before the first chunk.
- ``die_after: N``: drop the connection after N text chunks.
- ``error_after: N``: after N text chunks, send an ``{"error": ...}`` chunk.
- ``tool: NAME JSON``: call tool NAME with JSON arguments, in 4-character fragments.
- ``finish: REASON``: end with this finish_reason (default ``stop``).
- ``usage: off``: send no usage chunk.

``GET /fake/counts`` says how many chat requests came, over how many connections.

A request with ``"stream": false`` gets the same reply as one ``chat.completion``:
``die_after`` drops the connection before answering, ``error_after`` answers 500.

Run as a process: ``python -m tests.engines.upstream.fake_openai [--port P] [--token-delay S]
[--name NAME]``; it prints ``fake upstream listening on URL`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_NAMES = "say|status|headers_delay|prefill_delay|die_after|error_after|tool|finish|usage"
_DIRECTIVE = re.compile(rf"^({_NAMES}):\s?(.*)$", re.M)


@dataclass
class FakeState:
    name: str = "fake"
    token_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Streams the client closed before their end (the upstream saw it go away).
    cancelled: int = 0
    completed: int = 0
    # The client ports chat requests came from: one per connection a client opened.
    ports: set[int] = field(default_factory=set)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def _chunk(state: FakeState, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": state.name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def create_app(state: FakeState) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        state.requests.append(body)
        if request.client is not None:
            state.ports.add(request.client.port)
        d = {m.group(1): m.group(2).strip() for m in _DIRECTIVE.finditer(_last_user_text(body))}
        if "headers_delay" in d:
            await asyncio.sleep(float(d["headers_delay"]))
        if "status" in d:
            code = int(d["status"])
            headers = {"retry-after": "7"} if code == 429 else {}
            error = {"message": f"scripted {code}", "type": "scripted", "code": code}
            return JSONResponse({"error": error}, status_code=code, headers=headers)
        words = re.findall(r"\S+\s*", d.get("say", f"Hello from {state.name}"))
        if not body.get("stream"):
            return await _whole(state, d, words)
        return StreamingResponse(_stream(state, d, words), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": state.name, "object": "model"}]})

    async def counts(request: Request) -> Response:
        return JSONResponse({"requests": len(state.requests), "connections": len(state.ports)})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/fake/counts", counts, methods=["GET"]),
        ]
    )


async def _stream(state: FakeState, d: dict[str, str], words: list[str]) -> AsyncIterator[bytes]:
    finished = False
    try:
        yield _chunk(state, {"role": "assistant", "content": ""})
        if "prefill_delay" in d:
            await asyncio.sleep(float(d["prefill_delay"]))
        for sent, word in enumerate([] if "tool" in d else words):
            if str(sent) == d.get("die_after"):
                # A crash comes after what was sent has arrived: Parley's reader (aiohttp)
                # reports a dropped connection before what it still had buffered.
                await asyncio.sleep(0.2)
                raise ConnectionAbortedError("scripted death")  # uvicorn drops the connection
            if str(sent) == d.get("error_after"):
                error = {"message": "scripted failure", "type": "InternalError", "code": 500}
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
                finished = True
                return
            if state.token_delay:
                await asyncio.sleep(state.token_delay)
            yield _chunk(state, {"content": word})
        if "tool" in d:
            name, _, arguments = d["tool"].partition(" ")
            call = {"index": 0, "id": "call_1", "type": "function"}
            start = {**call, "function": {"name": name, "arguments": ""}}
            yield _chunk(state, {"tool_calls": [start]})
            for i in range(0, len(arguments), 4):
                fragment = {"index": 0, "function": {"arguments": arguments[i : i + 4]}}
                yield _chunk(state, {"tool_calls": [fragment]})
        finish = d.get("finish", "tool_calls" if "tool" in d else "stop")
        yield _chunk(state, {}, finish)
        if d.get("usage") != "off":
            usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 0}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"
        finished = True
    finally:
        if finished:
            state.completed += 1
        else:
            state.cancelled += 1


async def _whole(state: FakeState, d: dict[str, str], words: list[str]) -> Response:
    if "prefill_delay" in d:
        await asyncio.sleep(float(d["prefill_delay"]))
    if "die_after" in d:
        state.cancelled += 1
        raise ConnectionAbortedError("scripted death")  # uvicorn drops the connection
    if "error_after" in d:
        state.completed += 1
        error = {"message": "scripted failure", "type": "InternalError", "code": 500}
        return JSONResponse({"error": error}, status_code=500)
    reply = _completion(state, "".join(words), len(words))
    choice = reply["choices"][0]
    if "tool" in d:
        name, _, arguments = d["tool"].partition(" ")
        call = {"id": "call_1", "type": "function"}
        choice["message"] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**call, "function": {"name": name, "arguments": arguments}}],
        }
        reply["usage"]["completion_tokens"] = 0
    choice["finish_reason"] = d.get("finish", "tool_calls" if "tool" in d else "stop")
    if d.get("usage") == "off":
        del reply["usage"]
    if state.token_delay:
        await asyncio.sleep(state.token_delay * len(words))
    state.completed += 1
    return JSONResponse(reply)


def _completion(state: FakeState, text: str, tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": state.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": tokens, "total_tokens": 11 + tokens},
    }


@asynccontextmanager
async def serving(state: FakeState) -> AsyncIterator[str]:
    """Serve the fake on a free loopback port in this event loop; yields its /v1 URL."""
    async with serve_asgi(create_app(state)) as url:
        yield f"{url}/v1"


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port in this event loop; yields its URL."""
    server, task, url = await _start(app, 0, timeout_graceful_shutdown=1)
    try:
        yield url
    finally:
        server.should_exit = True
        await task


async def _start(
    app: Any, port: int, **options: Any
) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """A uvicorn server on loopback, once it listens: the server, its task, its URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        log_level="warning",
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{bound}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--name", default="fake")
    args = parser.parse_args()
    state = FakeState(name=args.name, token_delay=args.token_delay)

    async def run() -> None:
        _, task, url = await _start(create_app(state), args.port, access_log=False)
        print(f"fake upstream listening on {url}/v1", flush=True)
        await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
