"""GET / and HEAD /: a liveness answer (Claude Code probes `HEAD /` before it starts),
with links to the pages Parley serves."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley import __version__
from parley.server.routes.web import PAGES


async def root(request: Request) -> Response:
    return JSONResponse({"name": "parley", "version": __version__, "links": PAGES})
