"""POST /v1/messages and POST /v1/messages/count_tokens (api-spec §5, §6, §8)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from parley.core.bodies import parse_params
from parley.core.conversation import counting_request
from parley.core.generation import Meter
from parley.core.messages import collect_message, finalized, message_events, prepare_message
from parley.core.sse import error_frame, event_frame, with_pings
from parley.errors import APIError, InternalServerError
from parley.protocol.requests import CountTokensParams, MessageCreateParams
from parley.protocol.responses import TokenCount
from parley.protocol.stream import StreamEvent
from parley.server.requests import authenticate, read_body, services, unless_disconnected

log = logging.getLogger(__name__)

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def create_message(request: Request) -> Response:
    key, version = await authenticate(request)
    params = parse_params(await read_body(request), MessageCreateParams, version)
    svc = services(request)
    entry = svc.registry.resolve(params.model)
    limiter = svc.rate_limiter
    await limiter.check_budget(key, entry.id)
    prepared = await prepare_message(
        entry.engine, params, entry.max_output_tokens, images=svc.image_fetcher
    )
    admission = await limiter.admit_message(key, entry.id, prepared.input_tokens, params.max_tokens)
    meter = Meter()
    events = finalized(
        message_events(entry.engine, prepared, meter=meter),
        lambda: svc.finish_message(key, entry.id, admission, meter),
    )
    if params.stream:
        # Stream or not is decided by the body alone; the SDKs send
        # `Accept: application/json` either way (api-spec §1).
        return StreamingResponse(
            _sse(with_pings(events, svc.settings.ping_interval)),
            media_type="text/event-stream; charset=utf-8",
            headers={**SSE_HEADERS, **admission.headers},
        )
    message = await unless_disconnected(request, collect_message(events))
    return JSONResponse(message.model_dump(mode="json"), headers=admission.headers)


async def _sse(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield event_frame(event)
    except APIError as exc:
        # After the 200, failures travel as an `error` event and the stream ends (§6.4).
        yield error_frame(exc)
    except Exception:
        log.exception("stream failed")
        yield error_frame(InternalServerError("Internal server error"))


async def count_tokens(request: Request) -> Response:
    key, version = await authenticate(request)
    params = parse_params(await read_body(request), CountTokensParams, version)
    svc = services(request)
    entry = svc.registry.resolve(params.model)
    headers = await svc.rate_limiter.admit_count_tokens(key, entry.id)
    counted = await counting_request(params, entry.engine.capabilities, svc.image_fetcher)
    count = await entry.engine.count_tokens(counted)
    return JSONResponse(TokenCount(input_tokens=count).model_dump(), headers=headers)
