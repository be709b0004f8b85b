"""GET /v1/models and GET /v1/models/{model_id} (api-spec §9, api-version §19.14)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley.core.pagination import paginate, parse_limit
from parley.errors import NotFoundError
from parley.server.requests import authenticate, services

_DEFAULT_LIFECYCLE = {"active", "deprecated"}


async def list_models(request: Request) -> Response:
    await authenticate(request)
    query = request.query_params
    # Sent as `lifecycle[]=a&lifecycle[]=b` by the SDKs; plain repeats are accepted too.
    lifecycle = set(query.getlist("lifecycle[]") + query.getlist("lifecycle")) or _DEFAULT_LIFECYCLE
    models = [m for m in services(request).registry.listing() if m.lifecycle in lifecycle]
    page = paginate(
        models,
        lambda m: m.id,
        limit=parse_limit(query.get("limit")),
        after_id=query.get("after_id"),
        before_id=query.get("before_id"),
    )
    return JSONResponse(page.model_dump(mode="json"))


async def get_model(request: Request) -> Response:
    await authenticate(request)
    name = request.path_params["model_id"]
    try:
        entry = services(request).registry.resolve(name)
    except NotFoundError:
        raise NotFoundError(f"model: {name}") from None
    return JSONResponse(entry.info().model_dump(mode="json"))
