"""Outermost ASGI layer: request ids and common headers on every response, and the
body size limit checked before the body is read (api-spec §4, §12). It also opens
the request's observation (its context for log lines and the pipeline, its trace
span) and counts it in the metrics once answered."""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.config import Settings
from parley.core.ids import request_id
from parley.errors import TOO_LARGE, RequestTooLargeError
from parley.services import Services
from parley.telemetry.context import RequestContext, enter_request, leave_request


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
        svc = self.svc
        context = RequestContext(rid, time.perf_counter())
        token = enter_request(context)
        svc.metrics.request_started()
        method: str = scope["method"]
        extra = [
            (b"request-id", rid.encode()),
            (b"anthropic-organization-id", svc.organization_id.encode()),
        ]
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            context.span = svc.tracing.request_span(method, scope["path"], rid, scope["headers"])
            length = _content_length(scope)
            if length is not None and length > _body_limit(scope, svc.settings):
                await _too_large(send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            status = status or 499  # cancelled before answering: the client went away
            raise
        except Exception:
            status = status or 500  # the server answers 500 for an app that failed
            raise
        finally:
            route = _route(scope)
            svc.metrics.request_finished(
                route, method, status, context.model, time.perf_counter() - context.started
            )
            if context.span is not None:
                svc.tracing.end_request_span(context.span, route, status)
            leave_request(token)


def _route(scope: Scope) -> str:
    """The matched route's path template (a label of bounded values, unlike the path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"


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
