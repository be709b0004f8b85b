"""The generation client's connections to an upstream."""

from __future__ import annotations

import asyncio
import json

import pytest

from parley.engines.http_client import HTTPClient
from parley.engines.upstream_http import loads

REPLY = json.dumps({"choices": [], "usage": {}}).encode()


async def test_a_kept_alive_connection_closed_as_it_is_reused_is_retried() -> None:
    # The race a busy gateway meets: the upstream closes an idle kept-alive connection
    # just as the next request goes out on it. The request never reached the server.
    served: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connection = len(served)
        served.append(0)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed it
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if served[connection] == 1:
                writer.close()  # the second request on this connection: closed unanswered
                return
            served[connection] += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(REPLY), REPLY)
            )
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HTTPClient(f"http://127.0.0.1:{port}/v1", {}, connect_timeout=5, read_timeout=5)
    try:
        for _ in range(3):
            response = await client.post("chat/completions", b'{"model":"m"}', "application/json")
            assert response.status == 200
            assert await response.read() == REPLY
    finally:
        await client.aclose()
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
    # Every reuse met a connection closed unanswered, and went out again on a new one.
    assert served == [1, 1, 1]


def test_upstream_json_reads_what_the_json_module_reads() -> None:
    texts = [
        '{"choices": [{"delta": {"content": " quick"}, "finish_reason": null}]}',
        '{"a": 123456789012345678901234567890, "b": NaN, "c": 1.5, "d": "\\ud83d\\ude00"}',
        '{"a": "\\ud800 lone"}',  # pydantic-core refuses it; the json module's reading
    ]
    for text in texts:
        assert repr(loads(text)) == repr(json.loads(text))
        assert repr(loads(text.encode())) == repr(json.loads(text))
    with pytest.raises(json.JSONDecodeError):
        loads('{"unfinished": ')
