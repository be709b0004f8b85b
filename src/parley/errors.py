"""The APIError tree: one class per Anthropic error type (api-spec §12).

Code raises these. `envelope()` is the one rendering of the error body, wherever it
goes: an HTTP response, an SSE `error` event, a batch's `errored` result.
"""

from __future__ import annotations

from typing import Any, ClassVar


class APIError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        # api-version-2026-10-21 §19.8: optional `error.details` (e.g. error_code).
        self.details = details

    def to_error_object(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body

    def envelope(self, request_id: str | None = None, *, http: bool = False) -> dict[str, Any]:
        """`{"type": "error", "error": {...}}`; an HTTP response also carries its
        `request_id` (api-spec §12). An SSE event or a batch result has no id of its own."""
        body: dict[str, Any] = {"type": "error", "error": self.to_error_object()}
        if http:
            body["request_id"] = request_id
        return body


class InvalidRequestError(APIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(APIError):
    status = 401
    type = "authentication_error"


class BillingError(APIError):
    status = 402
    type = "billing_error"


class PermissionDeniedError(APIError):
    status = 403
    type = "permission_error"


class NotFoundError(APIError):
    status = 404
    type = "not_found_error"


class MethodNotAllowedError(APIError):
    status = 405
    type = "invalid_request_error"


TOO_LARGE = "Request exceeds the maximum size"


class RequestTooLargeError(APIError):
    status = 413
    type = "request_too_large"

    def envelope(self, request_id: str | None = None, *, http: bool = False) -> dict[str, Any]:
        # The edge-generated 413 has no top-level `type` and no request_id (§12).
        return {"error": self.to_error_object()}


class RequestTimeoutError(APIError):
    """The client stopped sending its request (headers or body) part way."""

    status = 408
    type = "timeout_error"


class RateLimitError(APIError):
    status = 429
    type = "rate_limit_error"


class InternalServerError(APIError):
    status = 500
    type = "api_error"


class ServiceUnavailableError(APIError):
    """A dependency (the store, the rate-limit backend) cannot be reached: worth a
    retry, here or on another replica (SDKs retry any 5xx, and obey x-should-retry)."""

    status = 503
    type = "api_error"

    def __init__(self, message: str = "Service temporarily unavailable", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("x-should-retry", "true")


class GatewayTimeoutError(APIError):
    status = 504
    type = "timeout_error"


class OverloadedError(APIError):
    """A full queue, a connection cap, a replica draining: always worth a retry, which
    the SDKs make at once when `x-should-retry: true` says so (api-spec §13)."""

    status = 529
    type = "overloaded_error"

    def __init__(self, message: str = "Overloaded", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("x-should-retry", "true")


ERROR_CLASSES_BY_TYPE: dict[str, type[APIError]] = {
    cls.type: cls
    for cls in (
        InvalidRequestError,
        AuthenticationError,
        BillingError,
        PermissionDeniedError,
        NotFoundError,
        RequestTooLargeError,
        RateLimitError,
        InternalServerError,
        GatewayTimeoutError,
        OverloadedError,
    )
}
