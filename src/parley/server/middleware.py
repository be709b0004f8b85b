"""Outermost ASGI layer: request ids and common headers on every response, the body
size limit checked before the body is read (api-spec §4, §12), new requests turned
away while the process drains, and the last line of defence for errors nobody caught.
It also opens the request's observation (its context for log lines and the pipeline,
its trace span) and counts it in the metrics once answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

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
from parley.server.logs import access_line
from parley.services import Services
from parley.telemetry.context import RequestContext, enter_request, leave_request

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
        svc = self.svc
        method: str = scope["method"]
        span = svc.tracing.request_span(method, scope["path"], rid, scope["headers"])
        # The request's clock (its duration, its time to first token) starts with its
        # span, never before it: a pause in between would count in one and not the other.
        context = RequestContext(rid, time.perf_counter(), span=span)
        token = enter_request(context)
        svc.metrics.request_started()
        extra = [
            (b"request-id", rid.encode()),
            (b"anthropic-organization-id", svc.organization_id.encode()),
        ]
        lifecycle = svc.lifecycle
        status = 0
        complete = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", [])) + extra
                if lifecycle.draining and CLOSE not in headers:
                    # Clients reconnect, through the load balancer, to a replica that stays.
                    headers.append(CLOSE)
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            if lifecycle.draining and _is_api(scope):
                # api-spec §13: x-should-retry makes the SDKs retry, elsewhere.
                await send_error(send_with_headers, OverloadedError(), rid, close=True)
                return
            length = _content_length(scope)
            if length is not None and length > _body_limit(scope, svc.settings):
                error = RequestTooLargeError(TOO_LARGE)
                await send_error(send_with_headers, error, rid, close=True)
                return
            with lifecycle.track():
                try:
                    await self.app(scope, receive, send_with_headers)
                except Exception:
                    if complete:
                        # Starlette's error middleware answered (and logged) already,
                        # then re-raised for the server, which would drop the connection.
                        return
                    if status:
                        raise  # a response cut half way: only closing the connection says so
                    log.exception("unhandled error on %s %s", method, scope.get("path"))
                    await send_error(
                        send_with_headers, InternalServerError("Internal server error"), rid
                    )
        except asyncio.CancelledError:
            status = status or 499  # cancelled before answering: the client went away
            raise
        except Exception:
            status = status or 500  # a response cut half way
            raise
        finally:
            route = _route(scope)
            svc.metrics.request_finished(
                route, method, status, context.model, time.perf_counter() - context.started
            )
            if context.span is not None:
                svc.tracing.end_request_span(context.span, route, status)
            if status:
                access_line(scope, status)
            leave_request(token)


def _route(scope: Scope) -> str:
    """The matched route's path template (a label of bounded values, unlike the path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"


def _is_api(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith("/v1/")


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
