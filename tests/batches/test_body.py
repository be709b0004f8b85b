"""Reading a create body one request at a time, whatever its chunking."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.core.batches_body import iter_requests
from parley.errors import InvalidRequestError, RequestTooLargeError

ITEMS: list[Any] = [
    {"custom_id": "a", "params": {"model": "m", "max_tokens": 12345, "temperature": 0.5}},
    {"custom_id": "b", "params": {"messages": [{"role": "user", "content": "héllo ✓ 🎉"}]}},
    {"custom_id": "c", "params": {"n": 1e3, "flag": True, "none": None, "list": [1, [2]]}},
]


async def chunked(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for size in sizes:
        yield data[start : start + size]
        start += size
    if start < len(data):
        yield data[start:]


async def read(data: bytes, sizes: list[int] | None = None, limit: int = 10**9) -> list[Any]:
    return [item async for item in iter_requests(chunked(data, sizes or []), limit)]


@pytest.mark.parametrize("indent", [None, 2])
async def test_any_chunking_gives_the_same_requests(indent: int | None) -> None:
    data = json.dumps({"requests": ITEMS}, indent=indent, ensure_ascii=False).encode()
    assert await read(data) == ITEMS
    assert await read(data, [1] * len(data)) == ITEMS  # multi-byte characters split too
    rng = random.Random(7)
    for _ in range(20):
        sizes = [rng.randint(1, 40) for _ in range(len(data))]
        assert await read(data, sizes) == ITEMS


async def test_a_number_split_across_chunks_is_read_whole() -> None:
    data = b'{"requests": [12345]}'
    assert await read(data, [18, 1, 1]) == [12345]


async def test_a_large_request_is_read_in_few_passes() -> None:
    big = {"custom_id": "big", "params": {"text": "x" * 2_000_000}}
    data = json.dumps({"requests": [big, ITEMS[0]]}).encode()
    assert await read(data, [4096] * (len(data) // 4096 + 1)) == [big, ITEMS[0]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "requests: Field required"),
        (b"   ", "requests: Field required"),
        (b"{}", "requests: Field required"),
        (b"[1]", "Input should be a valid dictionary or object"),
        (b'{"requests": 5}', "requests: Input should be a valid list"),
        (b'{"other": [], "requests": []}', "other: Extra inputs are not permitted"),
        (b'{"requests": [], "requests": []}', 'the key "requests" appears twice'),
        (b'{"requests": [1] } x', "Extra data: char 19"),
        (b'{"requests": [1 2]}', "Expecting ',' or ']': char 16"),
        (b'{"requests": [{"a": }]}', "Expecting value: char 20"),
        (b'{"requests": [1]', "Expecting ',' or '}': char 16"),
        (b'{"requests": ["\xff"]}', "'utf-8' codec can't decode byte 0xff"),
    ],
)
async def test_malformed_bodies(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await read(data, [3] * len(data))
    assert message in caught.value.message


async def test_the_size_limit_counts_bytes_as_they_arrive() -> None:
    data = json.dumps({"requests": ITEMS * 10}).encode()
    got: list[Any] = []

    async def consume() -> None:
        async for item in iter_requests(chunked(data, [100] * len(data)), 1000):
            got.append(item)

    with pytest.raises(RequestTooLargeError):
        await consume()
    assert 0 < len(got) < len(ITEMS) * 10  # refused mid-way, not after reading it all
