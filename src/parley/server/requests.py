"""Per-request helpers: authentication, version, body reading, disconnect watch."""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import Request

from parley.core.betas import parse_betas
from parley.core.records import ApiKey
from parley.core.versions import APIVersion, parse_version
from parley.errors import (
    TOO_LARGE,
    AuthenticationError,
    PermissionDeniedError,
    RequestTooLargeError,
)
from parley.server.cors import NOT_ALLOWED, is_browser_request
from parley.services import Services

T = TypeVar("T")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def presented_key(request: Request) -> str | None:
    # api-version §19.3: x-api-key wins when both are present; Bearer needs no beta header.
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authenticate(request: Request, *, admin: bool = False) -> tuple[ApiKey, APIVersion]:
    """Auth first, then the version header (the order mocks in the wild use, §3).

    Admin keys are for the admin endpoints only, and only admin keys may use them.
    """
    with services(request).tracing.span("auth"):
        return await _authenticate(request, admin)


async def _authenticate(request: Request, admin: bool) -> tuple[ApiKey, APIVersion]:
    secret = presented_key(request)
    if secret is None:
        raise AuthenticationError("x-api-key header is required")
    svc = services(request)
    key = await svc.keys.find(secret)
    if key is None or (key.is_admin and not admin):
        raise AuthenticationError("invalid x-api-key")
    if admin and not key.is_admin:
        raise PermissionDeniedError("This endpoint requires an admin API key.")
    if not key.browser_access and is_browser_request(request.headers):
        # The CORS middleware has already checked the opt-in header and adds the
        # CORS headers, so the page can read why it was refused (api-spec §14).
        raise PermissionDeniedError(NOT_ALLOWED)
    # A repeated header arrives comma-joined and is invalid as a whole (api-spec §3).
    versions = request.headers.getlist("anthropic-version")
    version = parse_version(", ".join(versions) if versions else None)
    request_betas(request)  # an unknown value is a 400 on every endpoint
    return key, version


def request_betas(request: Request) -> frozenset[str]:
    """The `anthropic-beta` values sent (comma-joined or repeated, api-spec §2)."""
    return parse_betas(request.headers.getlist("anthropic-beta"))


async def read_body(request: Request) -> bytes:
    """Read the body, refusing it as soon as it passes the limit (chunked uploads
    carry no Content-Length for the edge middleware to check)."""
    limit = services(request).settings.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)
