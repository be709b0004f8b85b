"""The ASGI application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from parley.errors import APIError
from parley.server.cors import CORSMiddleware
from parley.server.errors import (
    handle_api_error,
    handle_client_disconnect,
    handle_http_exception,
    handle_unexpected,
)
from parley.server.fast_routes import FastRoutes, Handler
from parley.server.middleware import EdgeMiddleware
from parley.server.routes import (
    admin,
    batches,
    files,
    messages,
    models,
    operations,
    root,
    web,
)
from parley.services import Services

# Every message passes through these: they skip the router (server/fast_routes.py).
HOT_ENDPOINTS = (messages.create_message, messages.count_tokens)


def routes() -> list[BaseRoute]:
    return [
        Route("/", root.root, methods=["GET", "HEAD"]),
        Route("/v1/messages", messages.create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/v1/messages/batches", batches.create_batch, methods=["POST"]),
        Route("/v1/messages/batches", batches.list_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", batches.get_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", batches.delete_batch, methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", batches.cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", batches.batch_results, methods=["GET"]),
        Route("/v1/files", files.upload_file, methods=["POST"]),
        Route("/v1/files", files.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", files.get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", files.delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", files.download_file, methods=["GET"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.get_model, methods=["GET"]),
        Route("/v1/organizations/api_keys", admin.list_api_keys, methods=["GET"]),
        Route("/v1/organizations/api_keys/{api_key_id}", admin.get_api_key, methods=["GET"]),
        Route("/v1/organizations/api_keys/{api_key_id}", admin.update_api_key, methods=["POST"]),
        Route(
            "/v1/organizations/usage_report/messages",
            admin.messages_usage_report,
            methods=["GET"],
        ),
        Route("/metrics", operations.metrics, methods=["GET"]),
        Route("/healthz", operations.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", operations.readyz, methods=["GET", "HEAD"]),
        *web.routes(),
    ]


# Requests that reach no handler get the API's envelope, never Starlette's plain text.
HANDLERS: dict[type[Exception], Handler] = {
    APIError: handle_api_error,
    HTTPException: handle_http_exception,
    ClientDisconnect: handle_client_disconnect,
    Exception: handle_unexpected,
}


def create_app(svc: Services) -> ASGIApp:
    """The app for running services (whoever started them stops them)."""
    app = Starlette(routes=routes(), exception_handlers=dict(HANDLERS))
    app.state.services = svc
    hot = [
        route
        for route in app.routes
        if isinstance(route, Route) and route.endpoint in HOT_ENDPOINTS
    ]
    fast = FastRoutes(app, hot, HANDLERS)
    return EdgeMiddleware(CORSMiddleware(fast, enabled=svc.settings.browser_access), svc)
