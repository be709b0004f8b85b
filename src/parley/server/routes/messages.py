"""POST /v1/messages and POST /v1/messages/count_tokens (api-spec §5, §6, §8)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from parley.core.bodies import parse_params
from parley.protocol.requests import CountTokensParams, MessageCreateParams
from parley.protocol.responses import TokenCount
from parley.server.client_watch import ClientWatch
from parley.server.event_stream import EventStreamResponse
from parley.server.requests import (
    authenticate,
    read_body,
    request_betas,
    services,
)

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
        return EventStreamResponse(
            run.events(),
            run.headers,
            run.aclose,
            ping_interval=svc.settings.ping_interval,
            lifecycle=svc.lifecycle,
        )
    async with ClientWatch(request.scope, request.receive, svc.lifecycle):
        message = await run.message(settle=False)
    return SettlingResponse(message.model_dump_json(), run.headers, run.aclose)


class SettlingResponse(Response):
    """A message's JSON, its run settled once it has been sent (or could not be)."""

    def __init__(
        self, body: str, headers: Mapping[str, str], settle: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(body, media_type=JSON, headers=headers)
        self._settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._settle()


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
