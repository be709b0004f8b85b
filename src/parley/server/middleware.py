"""Outermost ASGI layer: request ids and common headers on every response, the body
size limit checked before the body is read (api-spec §4, §12), new requests turned
away while the process drains, and the last line of defence for errors nobody caught.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.config import Settings
from parley.core.ids import request_id
from parley.errors import (
    TOO_LARGE,
    APIError,
    InternalServerError,
    OverloadedError,
    RequestTooLargeError,
)
from parley.services import Services

log = logging.getLogger(__name__)

CLOSE = (b"connection", b"close")


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, svc: Services) -> None:
        self.app = app
        self.svc = svc  # the organization id is known only once the services start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id()
        scope.setdefault("state", {})["request_id"] = rid
        extra = [
            (b"request-id", rid.encode()),
            (b"anthropic-organization-id", self.svc.organization_id.encode()),
        ]
        lifecycle = self.svc.lifecycle
        progress = {"started": False, "complete": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress["started"] = True
                headers = list(message.get("headers", [])) + extra
                if lifecycle.draining and CLOSE not in headers:
                    # Clients reconnect, through the load balancer, to a replica that stays.
                    headers.append(CLOSE)
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                progress["complete"] = True
            await send(message)

        if lifecycle.draining and _is_api(scope):
            # api-spec §13: x-should-retry makes the SDKs retry, elsewhere.
            await send_error(send_with_headers, OverloadedError(), rid, close=True)
            return
        length = _content_length(scope)
        if length is not None and length > _body_limit(scope, self.svc.settings):
            await send_error(send_with_headers, RequestTooLargeError(TOO_LARGE), rid, close=True)
            return
        with lifecycle.track():
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                if progress["complete"]:
                    # Starlette's error middleware answered (and logged) already, then
                    # re-raised for the server, which would drop the connection.
                    return
                if progress["started"]:
                    raise  # a response cut half way: only closing the connection says so
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                await send_error(
                    send_with_headers, InternalServerError("Internal server error"), rid
                )


def _is_api(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith("/v1/")


def _body_limit(scope: Scope, settings: Settings) -> int:
    # Creating a Message Batch has a limit of its own: 256 MB, not 32 (api-spec §12).
    if scope.get("method") == "POST" and scope.get("path") == "/v1/messages/batches":
        return settings.max_batch_body_bytes
    return settings.max_body_bytes


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def error_body(error: APIError, rid: str | None) -> bytes:
    return json.dumps(error.envelope(rid, http=True)).encode()


async def send_error(send: Send, error: APIError, rid: str | None, *, close: bool = False) -> None:
    """An error envelope written straight to ASGI (outside Starlette's handlers)."""
    body = error_body(error, rid)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in error.headers.items()),
    ]
    if close:
        headers.append(CLOSE)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
