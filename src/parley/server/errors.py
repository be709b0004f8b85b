"""The one place where errors become the wire envelope (api-spec §12)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from parley.errors import (
    APIError,
    InternalServerError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    ServiceUnavailableError,
)
from parley.store import database

log = logging.getLogger(__name__)


def error_response(error: APIError, request_id: str | None) -> JSONResponse:
    return JSONResponse(
        error.envelope(request_id, http=True), status_code=error.status, headers=error.headers
    )


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc, _request_id(request))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: APIError
    if exc.status_code == 404:
        error = NotFoundError("Not found")
    elif exc.status_code == 405:
        error = MethodNotAllowedError(f"Method {request.method} not allowed for {request.url.path}")
    else:
        error = InvalidRequestError(str(exc.detail))
    return error_response(error, _request_id(request))


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    # The client went away (e.g. an SDK timeout) and its work was cancelled: routine,
    # not a server error. Nobody reads this response; 499 marks it in access logs.
    assert isinstance(exc, ClientDisconnect)
    log.info("client disconnected on %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    if database.unavailable(exc):
        # Logged once per outage, not per request; the client retries (here or on
        # another replica) and succeeds once the database is back.
        database.OUTAGE.failed(exc)
        return error_response(ServiceUnavailableError(), _request_id(request))
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalServerError("Internal server error"), _request_id(request))
