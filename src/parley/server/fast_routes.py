"""The message routes, called without Starlette's router and middleware layers.

Every message passes through them, and their layers (server-error and exception
middleware, the router's matching, the endpoint wrapper, a send wrapper each) cost
about a tenth of a millisecond a request, of the millisecond a gateway may add
(bench/gateway.py). A request for one of these exact paths and methods goes straight
to its endpoint, with the same scope keys the router would set and the same
exception handlers the application has; everything else goes to the application.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class FastRoutes:
    def __init__(
        self,
        app: Starlette,
        routes: list[Route],
        handlers: Mapping[type[Exception], Handler],
    ) -> None:
        self._app = app
        self._handlers = handlers
        self._routes: dict[tuple[str, str], Route] = {
            (method, route.path): route for route in routes for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self._app(scope, receive, send)
            return
        scope["app"] = self._app
        scope["router"] = self._app.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            response = await self._handler(exc)(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler:
        for cls in type(exc).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        raise exc
