"""POST /v1/messages and POST /v1/messages/count_tokens (api-spec §5, §6, §8)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from parley.core.bodies import parse_params
from parley.core.sse import error_frame, event_frame, with_pings
from parley.errors import APIError, InternalServerError
from parley.protocol.requests import CountTokensParams, MessageCreateParams
from parley.protocol.responses import TokenCount
from parley.protocol.stream import StreamEvent
from parley.server.requests import (
    authenticate,
    read_body,
    request_betas,
    services,
    unless_disconnected,
)

log = logging.getLogger(__name__)

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
JSON = "application/json"


async def create_message(request: Request) -> Response:
    key, version = await authenticate(request)
    params = parse_params(
        await read_body(request), MessageCreateParams, version, request_betas(request)
    )
    svc = services(request)
    run = await svc.pipeline.open(key, params)
    if params.stream:
        # Stream or not is decided by the body alone; the SDKs send
        # `Accept: application/json` either way (api-spec §1).
        return StreamingResponse(
            _sse(with_pings(run.events(), svc.settings.ping_interval, svc.lifecycle.cut)),
            media_type="text/event-stream; charset=utf-8",
            headers={**SSE_HEADERS, **run.headers},
            # A client gone before the body started leaves the run unread: it is
            # closed, and settled, all the same.
            background=BackgroundTask(run.aclose),
        )
    message = await unless_disconnected(request, run.message())
    return Response(message.model_dump_json(), media_type=JSON, headers=run.headers)


async def _sse(batches: AsyncIterator[list[StreamEvent]]) -> AsyncIterator[bytes]:
    try:
        async for batch in batches:
            yield b"".join(event_frame(event) for event in batch)
    except APIError as exc:
        # After the 200, failures travel as an `error` event and the stream ends (§6.4).
        yield error_frame(exc)
    except Exception:
        log.exception("stream failed")
        yield error_frame(InternalServerError("Internal server error"))


async def count_tokens(request: Request) -> Response:
    key, version = await authenticate(request)
    params = parse_params(
        await read_body(request), CountTokensParams, version, request_betas(request)
    )
    svc = services(request)
    count = await svc.pipeline.count_tokens(key, params)
    body = TokenCount(input_tokens=count.input_tokens)
    if count.original_input_tokens is not None:
        body.context_management = {"original_input_tokens": count.original_input_tokens}
    return JSONResponse(body.model_dump(), headers=count.headers)
