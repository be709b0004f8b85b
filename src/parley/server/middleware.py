"""Outermost ASGI layer: request ids and common headers on every response, and the
body size limit checked before the body is read (api-spec §4, §12)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.config import Settings
from parley.core.ids import request_id
from parley.errors import TOO_LARGE, RequestTooLargeError
from parley.services import Services


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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        length = _content_length(scope)
        if length is not None and length > _body_limit(scope, self.svc.settings):
            await _too_large(send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


_MULTIPART_SLACK = 64 * 1024


def _body_limit(scope: Scope, settings: Settings) -> int:
    # Creating a Message Batch has a limit of its own: 256 MB, not 32 (api-spec §12).
    if scope.get("method") == "POST" and scope.get("path") == "/v1/messages/batches":
        return settings.max_batch_body_bytes
    # So has an upload (500 MB); the multipart framing around the file is let through,
    # and the file itself is measured as it arrives.
    if scope.get("method") == "POST" and scope.get("path") == "/v1/files":
        return settings.files_max_bytes + _MULTIPART_SLACK
    return settings.max_body_bytes


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send) -> None:
    body = json.dumps(RequestTooLargeError(TOO_LARGE).envelope()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
