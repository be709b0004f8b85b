"""Direct browser access, as the real API does it (api-spec §14, api-version §19.3).

A request with an `Origin` must opt in with
`anthropic-dangerous-direct-browser-access: true`; without it the answer is a 401
that carries no `Access-Control-Allow-Origin`, so the page cannot even read it.
Preflights cannot carry the opt-in header's value, only its name, so they are
always answered positively and the check happens on the actual request.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.errors import AuthenticationError, PermissionDeniedError
from parley.server.errors import error_response

OPT_IN = "anthropic-dangerous-direct-browser-access"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
MAX_AGE = "86400"
# Listed by name: a wildcard `Access-Control-Allow-Headers: *` does not cover
# `authorization`, which every TS 1.x browser client sends (api-version §19.3).
BASE_ALLOW_HEADERS = (
    "authorization",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    OPT_IN,
    "content-type",
)
EXPOSE_HEADERS = ", ".join(
    [
        "request-id",
        "anthropic-organization-id",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
    ]
    + [
        f"anthropic-ratelimit-{kind}-{part}"
        for kind in ("requests", "tokens", "input-tokens", "output-tokens")
        for part in ("limit", "remaining", "reset")
    ]
)
NOT_OPTED_IN = f"CORS requests must set '{OPT_IN}' header"
NOT_ALLOWED = (
    "CORS requests are not allowed for this Organization because of its settings. "
    "If you believe this in error, contact support at https://support.anthropic.com/."
)


def browser_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
    ]


def is_browser_request(headers: Headers) -> bool:
    return "origin" in headers


class CORSMiddleware:
    """Applies to the API (`/v1/...`); pages Parley serves itself are same-origin."""

    def __init__(self, app: ASGIApp, *, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not is_browser_request(headers):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _preflight(headers)(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        if headers.get(OPT_IN, "").lower() != "true":
            error = error_response(AuthenticationError(NOT_OPTED_IN), request_id)
            await error(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + browser_headers()
            await send(message)

        if not self.enabled:
            error = error_response(PermissionDeniedError(NOT_ALLOWED), request_id)
            await error(scope, receive, send_with_cors)
            return
        await self.app(scope, receive, send_with_cors)


def _preflight(headers: Headers) -> Response:
    requested = [
        h.strip().lower()
        for h in headers.get("access-control-request-headers", "").split(",")
        if h.strip()
    ]
    allow = list(dict.fromkeys([*requested, *BASE_ALLOW_HEADERS]))
    return Response(
        status_code=204,
        headers={
            "access-control-allow-origin": "*",
            "access-control-allow-methods": ALLOW_METHODS,
            "access-control-allow-headers": ", ".join(allow),
            "access-control-max-age": MAX_AGE,
        },
    )
