"""Upstream failures as the Anthropic errors Parley's client should see (api-spec §12):
an upstream 429 stays a 429 with its retry delay; unreachable and overloaded
upstreams are 529 `overloaded_error`, other 5xx a 500 `api_error`, both with
`x-should-retry: true` (§13). An upstream 4xx for the request Parley built is the
client's 400 only when its prompt did not fit; otherwise it is Parley's own failure
(`api_error`, not to be retried), logged with the upstream's body."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping

import httpx

from parley.engines.http_client import ConnectFailed, ReadTimeout
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
    status: int,
    message: str | None,
    headers: Mapping[str, str],
    *,
    upstream: str,
    body: bytes | None = None,
) -> APIError:
    """An upstream HTTP error status as the error Parley's client should see."""
    if status == 429:
        return RateLimitError(
            message or "Rate limited by the upstream; try again later.",
            headers=_retry_headers(headers, True),
        )
    if status in (408, 502, 503, 504, 529):
        _log_refusal(logging.WARNING, upstream, status, message, body)
        return OverloadedError("Overloaded", headers=_retry_headers(headers, True))
    if status >= 500:
        _log_refusal(logging.WARNING, upstream, status, message, body)
        return InternalServerError("Internal server error", headers=_retry_headers(headers, True))
    if status == 413:
        return RequestTooLargeError(message or TOO_LARGE)
    too_long = context_error(message, body)
    if too_long is not None:
        return too_long
    # 401/403/404: the server-held key, the upstream model name or the URL is wrong.
    # Any other 4xx: Parley built the request from one it had checked itself, so a
    # refusal that is not about the prompt's size is about Parley's translation (a
    # server quirk its flavor does not cover). Neither is for the client to fix, nor
    # tells it about the upstream (whose key and model it never sees).
    _log_refusal(logging.ERROR, upstream, status, message, body)
    return InternalServerError("Internal server error", headers={"x-should-retry": "false"})


def _log_refusal(
    level: int, upstream: str, status: int, message: str | None, body: bytes | None
) -> None:
    text = body[:2000].decode("utf-8", "replace") if body else (message or "")
    log.log(level, "upstream %s refused the request: HTTP %d %s", upstream, status, text)


# The prompt did not fit the upstream's context window, in each server's words: vLLM's
# and llama-cpp-python's ("maximum context length is N tokens. However, you requested
# T tokens (P in the messages, C in the completion)"), newer vLLM's ("... is too large:
# C. This model's maximum context length is N tokens and your request has P input
# tokens"), SGLang's ("Input length (P tokens) exceeds the maximum allowed length (N
# tokens)") and llama-server's ("request (P tokens) exceeds the available context size
# (N tokens)").
_CONTEXT_PATTERNS = (
    re.compile(
        r"maximum context length is (?P<n>\d+) tokens\. However, you requested \d+ tokens "
        r"\((?P<p>\d+) in the messages, (?P<c>\d+) in the completion\)"
    ),
    re.compile(
        r"too large: (?P<c>\d+)\. This model's maximum context length is (?P<n>\d+) tokens "
        r"and your request has (?P<p>\d+) input tokens"
    ),
    re.compile(
        r"maximum context length is (?P<n>\d+) tokens\. However, your request has (?P<p>\d+)"
    ),
    re.compile(
        r"Input length \((?P<p>\d+) tokens\) exceeds the maximum allowed length \((?P<n>\d+)"
    ),
    re.compile(r"request \((?P<p>\d+) tokens\) exceeds the available context size \((?P<n>\d+)"),
    re.compile(r"(context length|context size|context window)", re.IGNORECASE),
)


def context_error(message: str | None, body: bytes | None = None) -> InvalidRequestError | None:
    """An upstream's refusal of a prompt too long for its context, in the API's words
    (core/messages.py `check_context` says the same before a request is sent)."""
    if not message:
        return None
    for pattern in _CONTEXT_PATTERNS:
        found = pattern.search(message)
        if found is None:
            continue
        numbers = found.groupdict()
        if "p" not in numbers:
            return InvalidRequestError(f"prompt is too long: {message}")
        prompt, limit = int(numbers["p"]), int(numbers["n"])
        completion = numbers.get("c")
        if completion is None or prompt > limit:
            return InvalidRequestError(f"prompt is too long: {prompt} tokens > {limit} maximum")
        return InvalidRequestError(
            f"input length and `max_tokens` exceed context limit: {prompt} + {completion} > "
            f"{limit}, decrease input length or `max_tokens` and try again"
        )
    return None


def transport_error(exc: Exception, *, upstream: str) -> APIError:
    """A failure to reach or read the upstream (an httpx error, the generation client's
    `TransportError`, or a line too long to read), as the error Parley's client should
    see."""
    log.warning("upstream %s: %s: %s", upstream, type(exc).__name__, exc)
    retry = {"x-should-retry": "true"}
    if isinstance(exc, httpx.ReadTimeout | ReadTimeout):
        return GatewayTimeoutError("Request timed out", headers=retry)
    unreachable = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        ConnectFailed,
    )
    if isinstance(exc, unreachable):
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
