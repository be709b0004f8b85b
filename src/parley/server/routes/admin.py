"""Admin API: API keys and the messages usage report (`/v1/organizations/...`).

Only admin keys may call these, and admin keys may call nothing else, as
with the real API's admin keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley.core.bodies import parse_params
from parley.core.calendar import rfc3339
from parley.core.ids import id_shaped
from parley.core.pagination import paginate, parse_limit
from parley.core.records import ApiKey
from parley.core.usage_report import bucket_rows, decode_page, report_page, report_window
from parley.core.validation_errors import invalid_request_from
from parley.errors import InvalidRequestError, NotFoundError
from parley.protocol.admin import (
    ApiKeyInfo,
    ApiKeyListQuery,
    ApiKeyStatus,
    ApiKeyUpdateParams,
    MessagesUsageQuery,
)
from parley.server.requests import authenticate, read_body, services
from parley.store.keys import KeyArchived, KeyNotFound
from parley.store.usage import UsageRow

M = TypeVar("M", bound=BaseModel)

# Filters of the real API on things Parley does not track. Refused rather than
# ignored, so that nobody reads unfiltered numbers as filtered ones.
_UNTRACKED_KEY_FILTERS = ("workspace_id", "created_by_user_id")
_UNTRACKED_USAGE_FILTERS = (
    "workspace_ids",
    "service_tiers",
    "context_window",
    "account_ids",
    "service_account_ids",
    "inference_geos",
    "speeds",
)


def api_key_info(key: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=key.id,
        name=key.name,
        status=cast(ApiKeyStatus, key.status),
        created_at=rfc3339(key.created_at),
        partial_key_hint=key.hint,
        tier=key.tier,
        is_admin=key.is_admin,
        last_used_at=rfc3339(key.last_used_at) if key.last_used_at else None,
    )


async def list_api_keys(request: Request) -> Response:
    await authenticate(request, admin=True)
    query = request.query_params
    _refuse_untracked(query, _UNTRACKED_KEY_FILTERS)
    status = _validate(ApiKeyListQuery, _scalars(query, "status")).status
    keys = await services(request).keys.store.list()  # newest first, like the real API
    page = paginate(
        [api_key_info(k) for k in keys if status is None or k.status == status],
        lambda info: info.id,
        limit=parse_limit(query.get("limit")),
        after_id=query.get("after_id"),
        before_id=query.get("before_id"),
    )
    return JSONResponse(page.model_dump(mode="json"))


async def get_api_key(request: Request) -> Response:
    await authenticate(request, admin=True)
    key = await _get_key(request, request.path_params["api_key_id"])
    return JSONResponse(api_key_info(key).model_dump(mode="json"))


async def update_api_key(request: Request) -> Response:
    _, version = await authenticate(request, admin=True)
    key_id = request.path_params["api_key_id"]
    params = parse_params(await read_body(request), ApiKeyUpdateParams, version)
    if not id_shaped(key_id):
        raise _not_found(key_id)
    try:
        key = await services(request).keys.update(key_id, name=params.name, status=params.status)
    except KeyNotFound:
        raise _not_found(key_id) from None
    except KeyArchived:
        raise InvalidRequestError("status: an archived API key cannot be reactivated") from None
    return JSONResponse(api_key_info(key).model_dump(mode="json"))


async def messages_usage_report(request: Request) -> Response:
    await authenticate(request, admin=True)
    svc = services(request)
    query = request.query_params
    _refuse_untracked(query, _UNTRACKED_USAGE_FILTERS)
    params = _validate(
        MessagesUsageQuery,
        {
            **_scalars(query, "starting_at", "ending_at", "bucket_width", "limit", "page"),
            **_lists(query, "group_by", "api_key_ids", "models"),
        },
    )
    now = datetime.fromtimestamp(svc.clock(), UTC)
    window = report_window(
        starting_at=params.starting_at,
        ending_at=params.ending_at,
        width=params.bucket_width,
        limit=params.limit,
        resume_at=None if params.page is None else _page_start(params.page),
        now=now,
    )
    rows: list[UsageRow] = []
    if window.start is not None:
        # Whole buckets: a bucket counts all of its usage, also where starting_at
        # or ending_at falls inside it, so each bucket's label says what it holds.
        await svc.usage.flush()  # what this process still holds
        rows = await svc.usage.store.rows(
            since=window.start,
            until=window.end,
            key_ids=params.api_key_ids or None,
            models=params.models or None,
        )
    group_by = set(params.group_by)
    buckets = bucket_rows(
        rows, window, by_key="api_key_id" in group_by, by_model="model" in group_by
    )
    page = report_page(buckets, window, group_by, refreshed_at=now)
    return JSONResponse(page.model_dump(mode="json"))


async def _get_key(request: Request, key_id: str) -> ApiKey:
    if not id_shaped(key_id):
        raise _not_found(key_id)
    try:
        return await services(request).keys.store.get(key_id)
    except KeyNotFound:
        raise _not_found(key_id) from None


def _not_found(key_id: str) -> NotFoundError:
    return NotFoundError(f"api_key_id: {key_id} not found")


def _page_start(token: str) -> datetime:
    try:
        return decode_page(token)
    except ValueError:
        raise InvalidRequestError("page: Invalid page token") from None


def _refuse_untracked(query: QueryParams, names: tuple[str, ...]) -> None:
    for name in names:
        if name in query or f"{name}[]" in query:
            raise InvalidRequestError(f"{name}: Parley does not track this; it cannot filter by it")


def _scalars(query: QueryParams, *names: str) -> dict[str, Any]:
    return {name: query[name] for name in names if name in query}


def _lists(query: QueryParams, *names: str) -> dict[str, Any]:
    # The SDKs send arrays as `name[]=a&name[]=b`; plain repeats are accepted too.
    values = {name: query.getlist(f"{name}[]") + query.getlist(name) for name in names}
    return {name: items for name, items in values.items() if items}


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
