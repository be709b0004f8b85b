"""/v1/messages/batches: create, list, retrieve, cancel, delete, results (api-spec §11)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from parley.batches.service import to_wire
from parley.core.pagination import parse_limit
from parley.protocol.batches import PROGRESS_HEADER, DeletedMessageBatch, MessageBatch
from parley.protocol.models import Page
from parley.server.requests import authenticate, services


def _base_url(request: Request) -> str:
    # results_url must lead back to this server, never to api.anthropic.com: the SDKs
    # fetch it verbatim with the caller's key (api-spec §11).
    return services(request).settings.public_url or str(request.base_url)


def _batch(batch: MessageBatch, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(batch.model_dump(mode="json"), headers=headers)


async def create_batch(request: Request) -> Response:
    key, version = await authenticate(request)
    svc = services(request)
    await svc.limiter.check_budget(key)
    body: AsyncIterator[bytes] = request.stream()
    record = await svc.batches.create(key.id, version, body)
    return _batch(to_wire(record, _base_url(request)))


async def list_batches(request: Request) -> Response:
    key, _ = await authenticate(request)
    query = request.query_params
    records, has_more = await services(request).batches.page(
        key.id,
        limit=parse_limit(query.get("limit")),
        after_id=query.get("after_id"),
        before_id=query.get("before_id"),
    )
    base_url = _base_url(request)
    page = Page[MessageBatch](
        data=[to_wire(r, base_url) for r in records],
        has_more=has_more,
        first_id=records[0].id if records else None,
        last_id=records[-1].id if records else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


async def get_batch(request: Request) -> Response:
    key, _ = await authenticate(request)
    batches = services(request).batches
    record = await batches.get(key.id, request.path_params["batch_id"])
    headers = {}
    if record.processing_status != "ended":
        # request_counts must stay all `processing` until the end (api-spec §11), so
        # progress travels in a header of our own (`parley batches create --wait`).
        finished = await batches.finished_count(record.id)
        headers[PROGRESS_HEADER] = str(finished)
    return _batch(to_wire(record, _base_url(request)), headers)


async def cancel_batch(request: Request) -> Response:
    key, _ = await authenticate(request)
    batch_id = request.path_params["batch_id"]
    record = await services(request).batches.cancel(key.id, batch_id)
    return _batch(to_wire(record, _base_url(request)))


async def delete_batch(request: Request) -> Response:
    key, _ = await authenticate(request)
    batch_id = request.path_params["batch_id"]
    await services(request).batches.delete(key.id, batch_id)
    return JSONResponse(DeletedMessageBatch(id=batch_id).model_dump(mode="json"))


async def batch_results(request: Request) -> Response:
    key, _ = await authenticate(request)
    batch_id = request.path_params["batch_id"]
    lines = await services(request).batches.results(key.id, batch_id)
    # The documented type; the SDKs ask with `Accept: application/binary` and read the
    # body as lines whatever its type (api-spec §11).
    return StreamingResponse(lines, media_type="application/x-jsonl")
