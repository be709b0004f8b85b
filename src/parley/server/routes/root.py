"""GET / and HEAD /: a liveness answer (Claude Code probes `HEAD /` before it starts)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley import __version__


async def root(request: Request) -> Response:
    return JSONResponse({"name": "parley", "version": __version__})
