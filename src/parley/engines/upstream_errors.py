"""Upstream failures as the Anthropic errors Parley's client should see (api-spec §12):
an upstream 429 stays a 429 with its retry delay; unreachable and overloaded
upstreams are 529 `overloaded_error`, other 5xx a 500 `api_error`, both with
`x-should-retry: true` (§13)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import httpx

from parley.errors import (
    TOO_LARGE,
    APIError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    RequestTooLargeError,
)

log = logging.getLogger(__name__)

# Headers that tell an SDK when to retry (api-spec §4, §13); kept from upstream 429/5xx.
_RETRY_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")


def _retry_headers(headers: Mapping[str, str], should_retry: bool) -> dict[str, str]:
    kept = {name: headers[name] for name in _RETRY_HEADERS if name in headers}
    kept.setdefault("x-should-retry", "true" if should_retry else "false")
    return kept


def status_error(
    status: int, message: str | None, headers: Mapping[str, str], *, upstream: str
) -> APIError:
    """An upstream HTTP error status as the error Parley's client should see."""
    if status == 429:
        return RateLimitError(
            message or "Rate limited by the upstream; try again later.",
            headers=_retry_headers(headers, True),
        )
    if status in (502, 503, 504, 529):
        return OverloadedError("Overloaded", headers=_retry_headers(headers, True))
    if status >= 500:
        return InternalServerError("Internal server error", headers=_retry_headers(headers, True))
    if status == 413:
        return RequestTooLargeError(message or TOO_LARGE)
    if status in (401, 403, 404):
        # The server-held key, the upstream model name or the URL is wrong: nothing the
        # client can fix, so it is not told about the upstream (whose key it never sees).
        log.error("upstream %s refused the request: HTTP %d %s", upstream, status, message or "")
        return InternalServerError("Internal server error", headers={"x-should-retry": "false"})
    return InvalidRequestError(message or f"The upstream refused the request (HTTP {status}).")


def transport_error(exc: httpx.HTTPError, *, upstream: str) -> APIError:
    """A failure to reach or read the upstream, as the error Parley's client should see."""
    log.warning("upstream %s: %s: %s", upstream, type(exc).__name__, exc)
    retry = {"x-should-retry": "true"}
    if isinstance(exc, httpx.ReadTimeout):
        return GatewayTimeoutError("Request timed out", headers=retry)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return OverloadedError("Overloaded", headers=retry)
    return InternalServerError("Internal server error", headers=retry)


def error_message(body: bytes) -> tuple[str | None, str | None]:
    """(message, Anthropic error type) from an error body of either API's shape."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or None), None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("type")
        return (str(message) if message else None), (kind if isinstance(kind, str) else None)
    if isinstance(error, str):
        return error, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None
    return None, None
