"""The floor under any Python gateway on Parley's stack: a pass-through proxy.

uvicorn (httptools, uvloop, access log on, as `parley serve` runs) and Starlette
in front, Parley's own generation client (parley.engines.http_client) to the
upstream; but no key, no limits, no usage, no
translation: an OpenAI chat request is forwarded as it came and the reply relayed
as it comes. `bench/gateway.py --targets ...,passthrough` measures it beside
Parley, so the table separates what the stack costs from what Parley's own work
adds. Not a product: a measuring stick.

    .venv/bin/python bench/passthrough.py --upstream http://127.0.0.1:PORT/v1 [--port P]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from parley.engines.http_client import HTTPClient


def create_app(upstream: str) -> Starlette:
    client = HTTPClient(upstream, {}, connect_timeout=10, read_timeout=60, idle=4)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def chat(request: Request) -> Response:
        body = await request.body()
        reply = await client.post("chat/completions", body, "application/json")
        kind = reply.headers.get("content-type", "application/json")
        if kind.startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    while piece := await reply.readany():
                        yield piece
                finally:
                    reply.close()

            return StreamingResponse(relay(), status_code=reply.status, media_type=kind)
        data = await reply.read()
        reply.close()
        return Response(data, status_code=reply.status, media_type=kind)

    async def health(_: Request) -> Response:
        return Response("ok")

    routes = [Route("/chat/completions", chat, methods=["POST"]), Route("/health", health)]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the upstream's OpenAI base URL")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = uvicorn.Config(
        create_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        log_config=None,
    )
    server = uvicorn.Server(config)
    server.run()


if __name__ == "__main__":
    main()
