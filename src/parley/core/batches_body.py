"""Read a batch create body (`{"requests": [...]}`) one request at a time.

A batch may be 256 MB and 100,000 requests (api-spec §11), so the body is never
held whole: each element of `requests` is decoded (by the stdlib's C decoder)
as soon as its bytes have arrived, and handed on.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

from parley.core.bodies import clean, may_hold_surrogates, parse_error, raw_decode
from parley.errors import TOO_LARGE, InvalidRequestError, RequestTooLargeError

_WHITESPACE = " \t\n\r"
# Consumed text is dropped from the buffer once this much of it has piled up.
_COMPACT_AT = 1 << 16


def _parse_error(message: str) -> InvalidRequestError:
    # The wording of the plain body parser.
    return parse_error(message)


class _Reader:
    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._size = 0
        self._offset = 0  # characters dropped from the front of `buf`
        self.buf = ""
        self.pos = 0
        self.eof = False

    async def more(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the body."""
        if self.eof:
            return False
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self.eof = True
            chunk = b""
        self._size += len(chunk)
        if self._size > self._limit:
            raise RequestTooLargeError(TOO_LARGE)
        if self.pos > _COMPACT_AT:
            self._offset += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            self.buf += self._decoder.decode(chunk, final=self.eof)
        except UnicodeDecodeError as exc:
            raise _parse_error(str(exc)) from None
        return bool(chunk) or not self.eof

    async def peek(self) -> str | None:
        """The next non-whitespace character (not consumed); None at the end."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not await self.more():
                return None

    async def expect(self, chars: str) -> str:
        found = await self.peek()
        if found is None or found not in chars:
            wanted = " or ".join(repr(c) for c in chars)
            raise _parse_error(f"Expecting {wanted}: char {self._offset + self.pos}")
        self.pos += 1
        return found

    async def value(self) -> Any:
        """Decode the JSON value that starts at the next non-whitespace character."""
        await self.peek()
        while True:
            try:
                value, end = raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if not await self._grow():
                    raise _parse_error(f"{exc.msg}: char {self._offset + exc.pos}") from None
                continue
            # A number that ends where the buffer does may go on in the next chunk.
            if end == len(self.buf) and not self.eof:
                await self._grow()
                continue
            # Deep nesting and lone surrogates are handled as in a plain body.
            value = clean(value, may_hold_surrogates(self.buf[self.pos : end]))
            self.pos = end
            return value

    async def _grow(self) -> bool:
        # Read until the unparsed text has doubled, so that a large value is re-scanned
        # a logarithmic number of times, not once per chunk.
        wanted = 2 * (len(self.buf) - self.pos) + 1
        grew = False
        while len(self.buf) - self.pos < wanted and await self.more():
            grew = True
        return grew


async def iter_requests(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[Any]:
    """Yield each element of the body's `requests` array as decoded JSON, in order.

    Raises InvalidRequestError for malformed JSON or a body of another shape, with
    the messages the pydantic-validated endpoints give, and RequestTooLargeError past
    `limit` bytes. The caller validates the elements and counts them.
    """
    reader = _Reader(chunks, limit)
    first = await reader.peek()
    if first is None:
        raise InvalidRequestError("requests: Field required")
    if first != "{":
        await reader.value()
        raise InvalidRequestError("Input should be a valid dictionary or object")
    reader.pos += 1
    seen = False
    if await reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            key = await reader.value()
            if not isinstance(key, str):
                raise _parse_error("Expecting property name enclosed in double quotes")
            await reader.expect(":")
            if key != "requests":
                await reader.value()
                raise InvalidRequestError(f"{key}: Extra inputs are not permitted")
            if seen:
                raise _parse_error('the key "requests" appears twice')
            seen = True
            if await reader.peek() != "[":
                await reader.value()
                raise InvalidRequestError("requests: Input should be a valid list")
            reader.pos += 1
            if await reader.peek() == "]":
                reader.pos += 1
            else:
                while True:
                    yield await reader.value()
                    if await reader.expect(",]") == "]":
                        break
            if await reader.expect(",}") == "}":
                break
    if await reader.peek() is not None:
        raise _parse_error(f"Extra data: char {reader._offset + reader.pos}")
    if not seen:
        raise InvalidRequestError("requests: Field required")
