"""Cursor pagination (api-spec §10) and the `limit` query parameter (§9)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from parley.core.pagination import paginate, parse_limit
from parley.errors import InvalidRequestError, NotFoundError


class Item(BaseModel):
    id: str


ITEMS = [Item(id=f"i{n}") for n in range(1, 8)]  # i1 .. i7, in list order


def key(item: Item) -> str:
    return item.id


def page_ids(
    *, limit: int, after_id: str | None = None, before_id: str | None = None
) -> tuple[list[str], bool, str | None, str | None]:
    page = paginate(ITEMS, key, limit=limit, after_id=after_id, before_id=before_id)
    return [i.id for i in page.data], page.has_more, page.first_id, page.last_id


def test_parse_limit_default() -> None:
    assert parse_limit(None) == 20
    assert parse_limit(None, default=7) == 7


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("20", 20), ("1000", 1000), (" 5", 5)])
def test_parse_limit_valid(raw: str, expected: int) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "limit: Input should be greater than or equal to 1"),
        ("-1", "limit: Input should be greater than or equal to 1"),
        ("1001", "limit: Input should be less than or equal to 1000"),
        ("ten", "limit: Input should be a valid integer"),
        ("", "limit: Input should be a valid integer"),
        ("2.5", "limit: Input should be a valid integer"),
    ],
)
def test_parse_limit_invalid(raw: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_limit(raw)
    assert caught.value.message == message


def test_parse_limit_custom_maximum() -> None:
    assert parse_limit("50", maximum=50) == 50
    with pytest.raises(InvalidRequestError):
        parse_limit("51", maximum=50)


def test_first_page() -> None:
    assert page_ids(limit=3) == (["i1", "i2", "i3"], True, "i1", "i3")


def test_everything_fits() -> None:
    assert page_ids(limit=7) == ([i.id for i in ITEMS], False, "i1", "i7")
    assert page_ids(limit=100) == ([i.id for i in ITEMS], False, "i1", "i7")


def test_after_id() -> None:
    assert page_ids(limit=3, after_id="i3") == (["i4", "i5", "i6"], True, "i4", "i6")
    assert page_ids(limit=3, after_id="i6") == (["i7"], False, "i7", "i7")
    assert page_ids(limit=3, after_id="i4") == (["i5", "i6", "i7"], False, "i5", "i7")


def test_after_the_last_item() -> None:
    assert page_ids(limit=3, after_id="i7") == ([], False, None, None)


def test_before_id() -> None:
    assert page_ids(limit=3, before_id="i7") == (["i4", "i5", "i6"], True, "i4", "i6")
    assert page_ids(limit=3, before_id="i4") == (["i1", "i2", "i3"], False, "i1", "i3")
    assert page_ids(limit=3, before_id="i3") == (["i1", "i2"], False, "i1", "i2")


def test_before_the_first_item() -> None:
    assert page_ids(limit=3, before_id="i1") == ([], False, None, None)


def test_empty_list() -> None:
    empty: list[Item] = []
    page = paginate(empty, key, limit=5)
    assert page.data == []
    assert page.has_more is False
    assert page.first_id is None
    assert page.last_id is None


def test_walk_forward_visits_every_item_once() -> None:
    seen: list[str] = []
    after: str | None = None
    while True:
        page = paginate(ITEMS, key, limit=2, after_id=after)
        seen += [i.id for i in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert seen == [i.id for i in ITEMS]


def test_walk_backward_visits_every_item_once() -> None:
    seen: list[str] = []
    before = "i7"
    while True:
        page = paginate(ITEMS, key, limit=2, before_id=before)
        seen = [i.id for i in page.data] + seen
        if not page.has_more:
            break
        assert page.first_id is not None
        before = page.first_id
    assert seen == [i.id for i in ITEMS][:-1]


def test_page_serialises_with_all_keys() -> None:
    dumped = paginate(ITEMS, key, limit=1, after_id="i7").model_dump(mode="json")
    assert dumped == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    dumped = paginate(ITEMS, key, limit=1).model_dump(mode="json")
    assert dumped == {"data": [{"id": "i1"}], "has_more": True, "first_id": "i1", "last_id": "i1"}


def test_unknown_cursor() -> None:
    with pytest.raises(NotFoundError) as caught:
        paginate(ITEMS, key, limit=3, after_id="nope")
    assert caught.value.message == "after_id: nope not found"
    with pytest.raises(NotFoundError) as caught:
        paginate(ITEMS, key, limit=3, before_id="nope")
    assert caught.value.message == "before_id: nope not found"


def test_both_cursors_are_refused() -> None:
    with pytest.raises(InvalidRequestError):
        paginate(ITEMS, key, limit=3, after_id="i2", before_id="i5")
