"""Cursor pagination over an ordered list of items (api-spec §10)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel

from parley.errors import InvalidRequestError, NotFoundError
from parley.protocol.models import Page

T = TypeVar("T", bound=BaseModel)


def parse_limit(raw: str | None, *, default: int = 20, maximum: int = 1000) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequestError("limit: Input should be a valid integer") from None
    if limit < 1:
        raise InvalidRequestError("limit: Input should be greater than or equal to 1")
    if limit > maximum:
        raise InvalidRequestError(f"limit: Input should be less than or equal to {maximum}")
    return limit


def paginate(
    items: Sequence[T],
    key: Callable[[T], str],
    *,
    limit: int,
    after_id: str | None = None,
    before_id: str | None = None,
) -> Page[T]:
    ids = [key(item) for item in items]

    def position(cursor: str, name: str) -> int:
        try:
            return ids.index(cursor)
        except ValueError:
            raise NotFoundError(f"{name}: {cursor} not found") from None

    if after_id is not None and before_id is not None:
        raise InvalidRequestError("after_id: cannot be used together with before_id")
    if before_id is not None:
        end = position(before_id, "before_id")
        start = max(0, end - limit)
        page, has_more = items[start:end], start > 0
    else:
        start = position(after_id, "after_id") + 1 if after_id is not None else 0
        page, has_more = items[start : start + limit], start + limit < len(items)
    return Page[T](
        data=list(page),
        has_more=has_more,
        first_id=key(page[0]) if page else None,
        last_id=key(page[-1]) if page else None,
    )
