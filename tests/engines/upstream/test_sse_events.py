"""Server-sent events read from an upstream body however its bytes arrive (the SSE
format: `event:` and `data:` fields, a blank line ending each event, CRLF or LF line
ends, comments and unknown fields skipped)."""

from __future__ import annotations

import pytest

from parley.engines.upstream_http import OpenStream, SSEEvent

BODY = (
    ": a comment, as servers send to keep a connection open\n"
    'data: {"a":1}\n'
    "\n"
    "event: message_start\n"
    'data: {"b":"é, two bytes"}\n'
    "\n"
    "data:no space\n"
    "id: 7\n"
    "\n"
    "\n"
    "\n"
    "data: first line\n"
    "data: second line\n"
    "\n"
    "event: only a name\n"
    "\n"
    "data: [DONE]\n"
    "\n"
    "data: unterminated at the end"
)
EXPECTED = [
    SSEEvent(None, '{"a":1}'),
    SSEEvent("message_start", '{"b":"é, two bytes"}'),
    SSEEvent(None, "no space"),
    SSEEvent(None, "first line\nsecond line"),
    SSEEvent(None, "[DONE]"),
    SSEEvent(None, "unterminated at the end"),
]


class Pieces:
    """A response body that arrives in the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def close(self) -> None:
        pass


async def events(pieces: list[bytes]) -> list[SSEEvent]:
    stream = OpenStream(Pieces(pieces), upstream="test")  # type: ignore[arg-type]
    out = []
    while (event := await stream.next_event()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
async def test_events_are_the_same_however_the_body_is_cut(newline: str) -> None:
    body = BODY.replace("\n", newline).encode()
    assert await events([body]) == EXPECTED
    for cut in range(1, len(body)):  # every place, a multi-byte character's middle too
        assert await events([body[:cut], body[cut:]]) == EXPECTED, cut
    assert await events([body[i : i + 1] for i in range(len(body))]) == EXPECTED


async def test_what_arrived_whole_is_there_without_waiting() -> None:
    body = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: {"c"'
    stream = OpenStream(Pieces([body]), upstream="test")  # type: ignore[arg-type]
    assert await stream.next_event() == SSEEvent(None, '{"a":1}')
    assert stream.buffered_event() == SSEEvent(None, '{"b":2}')
    assert stream.buffered_event() is None  # the third is still arriving
    assert await stream.next_event() == SSEEvent(None, '{"c"')  # the body ended there
    assert await stream.next_event() is None
