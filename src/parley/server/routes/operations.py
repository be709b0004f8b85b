"""For operators, not part of the Claude API: Prometheus metrics, and the probes of
load balancers and Kubernetes (docs/operations.md).

`/healthz` says the process serves HTTP; `/readyz` says it should be sent requests
(503 with what is not ready otherwise, draining included); neither needs a key.
`/metrics` is open, for admin keys only, or absent, as `metrics` is set.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from parley.server.requests import presented_key, services
from parley.telemetry.readiness import check_readiness

log = logging.getLogger(__name__)

# A scrape waits this long for the store's batch counts, then goes without them.
BATCH_COUNT_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    readiness = await check_readiness(
        svc.database, svc.limiter, svc.registry, draining=svc.draining
    )
    return JSONResponse(readiness.body(), status_code=200 if readiness.ready else 503)


async def metrics(request: Request) -> Response:
    svc = services(request)
    mode = svc.settings.metrics
    if mode == "off":
        raise NotFoundError("Not found")
    if mode == "admin":
        await _admin_only(request)
    try:
        async with asyncio.timeout(BATCH_COUNT_TIMEOUT):
            progress = await svc.batches.progress()
    except Exception as exc:
        log.warning("metrics: batch counts unavailable (%s)", type(exc).__name__)
        progress = None
    svc.metrics.set_batch_progress(progress)
    body, content_type = svc.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


async def _admin_only(request: Request) -> None:
    """An admin key, as the admin endpoints take it; no `anthropic-version` is asked
    of a scraper."""
    secret = presented_key(request)
    if secret is None:
        raise AuthenticationError("x-api-key header is required")
    key = await services(request).keys.find(secret)
    if key is None:
        raise AuthenticationError("invalid x-api-key")
    if not key.is_admin:
        raise PermissionDeniedError("This endpoint requires an admin API key.")
