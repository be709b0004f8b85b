"""The generation request's HTTP/1.1 client against raw servers on loopback, each
answering in one way a real upstream may: framing, keep-alive, silence, a close."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from parley.engines.http_client import (
    END_GRACE,
    ConnectFailed,
    ConnectionBroken,
    HTTPClient,
    ReadTimeout,
)
from parley.engines.upstream_errors import transport_error
from tests.engines.upstream.raw_server import raw_server, read_request


def client(url: str, *, read_timeout: float = 5.0) -> HTTPClient:
    return HTTPClient(
        url, {"Authorization": "Bearer k"}, connect_timeout=5, read_timeout=read_timeout, idle=4
    )


async def test_a_request_goes_out_whole_and_the_answer_comes_back_framed_by_length() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n"
                b"X-Thing: a\r\nX-Thing: b\r\n\r\nhello"
            )

    async with raw_server(handler) as (url, writers):
        http = client(url)
        try:
            for _ in range(3):
                response = await http.post("chat/completions", b'{"a":1}', "application/json")
                assert response.status == 201
                assert response.headers["x-thing"] == "a, b"
                assert await response.read() == b"hello"
        finally:
            await http.aclose()
    head, body = seen[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nauthorization: Bearer k\r\n" in head
    assert b"\r\ncontent-type: application/json\r\n" in head
    assert b"\r\naccept-encoding: identity\r\n" in head
    assert body == b'{"a":1}'
    # Kept alive: three requests, one connection.
    assert len(seen) == 3
    assert len(writers) == 1


async def test_a_chunked_body_is_read_as_it_arrives() -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await go_on.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with raw_server(handler) as (url, _):
        http = client(url)
        try:
            response = await http.post("x", b"{}", "application/json")
            assert await response.readany() == b"first"
            go_on.set()
            assert await response.readany() == b"second"
            assert await response.readany() == b""
        finally:
            await http.aclose()


async def test_connections_left_idle_past_the_limit_are_closed() -> None:
    # A burst opens two connections; then one request at a time keeps reusing the
    # newest, and the other, idle past the limit, is closed instead of kept.
    closed: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                closed.append(1)
                return
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with raw_server(handler) as (url, writers):
        http = HTTPClient(url, {}, connect_timeout=5, read_timeout=5, idle=0.3)

        async def one() -> None:
            response = await http.post("x", b"{}", "application/json")
            assert await response.read() == b"ok"

        try:
            await asyncio.gather(one(), one())
            assert len(writers) == 2
            for _ in range(8):
                await one()
                await asyncio.sleep(0.05)
            assert closed == [1]  # the burst's extra connection, by the client
            assert len(writers) == 2  # the other was reused throughout
        finally:
            await http.aclose()


async def test_a_body_ended_by_the_close_of_its_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as (url, writers):
        http = client(url)
        try:
            for _ in range(2):
                response = await http.post("x", b"{}", "application/json")
                assert await response.read() == b"all of it"
        finally:
            await http.aclose()
    assert len(writers) == 2  # not reused


async def test_a_response_cut_before_its_end_is_an_error_not_a_short_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as (url, _):
        http = client(url)
        try:
            response = await http.post("x", b"{}", "application/json")
            with pytest.raises(ConnectionBroken):
                await response.read()
        finally:
            await http.aclose()


async def test_an_answer_that_is_not_http_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with raw_server(handler) as (url, _):
        http = client(url)
        try:
            with pytest.raises(ConnectionBroken):
                await http.post("x", b"{}", "application/json")
        finally:
            await http.aclose()


async def test_silence_past_the_read_timeout_is_a_gateway_timeout() -> None:
    async def silent_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read(1)  # until the client gives up

    async def silent_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()
        await reader.read(1)

    async with raw_server(silent_head) as (url, _):
        http = client(url, read_timeout=0.2)
        try:
            with pytest.raises(ReadTimeout) as caught:
                await http.post("x", b"{}", "application/json")
        finally:
            await http.aclose()
    assert transport_error(caught.value, upstream="u").status == 504

    async with raw_server(silent_body) as (url, _):
        http = client(url, read_timeout=0.2)
        try:
            response = await http.post("x", b"{}", "application/json")
            assert await response.readany() == b"a"
            with pytest.raises(ReadTimeout):
                await response.readany()
        finally:
            await http.aclose()


async def test_nobody_listening_is_a_connect_failure_the_client_sees_as_overloaded() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening
        http = client(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(ConnectFailed) as caught:
                await http.post("x", b"{}", "application/json")
        finally:
            await http.aclose()
    error = transport_error(caught.value, upstream="u")
    assert (error.status, error.headers["x-should-retry"]) == (529, "true")


async def test_closing_an_unfinished_response_drops_its_connection() -> None:
    # The upstream sees its client go away, and can stop generating.
    gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        if await reader.read(1) == b"":
            gone.set()

    async with raw_server(handler) as (url, _):
        http = client(url)
        try:
            response = await http.post("x", b"{}", "application/json")
            assert await response.readany() == b"abc"
            response.close()
            await asyncio.wait_for(gone.wait(), 5)
        finally:
            await http.aclose()


async def test_a_head_waited_for_in_turns_arrives_whole_on_the_same_connection() -> None:
    # Waiting for the head stops and starts again (Parley's response starts in
    # between); the request goes on, and its connection is kept for the next one.
    answer = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await answer.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with raw_server(handler) as (url, writers):
        http = client(url)
        try:
            exchange = await http.send("x", b"{}", "application/json")
            assert await exchange.head(0.05) is None
            assert await exchange.head(0.05) is None
            answer.set()
            response = await exchange.head(5)
            assert response is not None
            assert await response.read() == b"ok"
            again = await http.post("x", b"{}", "application/json")
            assert await again.read() == b"ok"
        finally:
            await http.aclose()
    assert len(writers) == 1


async def test_silence_with_nobody_waiting_is_still_a_timeout() -> None:
    # The read timeout runs from the request's sending, waited for or not.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read(1)

    async with raw_server(handler) as (url, _):
        http = client(url, read_timeout=0.1)
        try:
            exchange = await http.send("x", b"{}", "application/json")
            await asyncio.sleep(0.3)
            with pytest.raises(ReadTimeout):
                await exchange.head(5)
        finally:
            await http.aclose()


async def test_an_exchange_closed_before_its_head_drops_the_request() -> None:
    gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if await reader.read(1) == b"":
            gone.set()

    async with raw_server(handler) as (url, _):
        http = client(url)
        try:
            exchange = await http.send("x", b"{}", "application/json")
            assert await exchange.head(0.01) is None
            exchange.close()
            await asyncio.wait_for(gone.wait(), 5)
            with pytest.raises(ConnectionBroken):
                await exchange.head(1)
        finally:
            await http.aclose()


async def test_a_response_released_at_its_end_marker_keeps_its_connection() -> None:
    # A stream's `[DONE]` and its body's last chunk may come apart: the connection
    # waits for the latter and is kept. An ending that never comes closes it.
    rounds: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\ne\r\ndata: [DONE]\n\n\r\n"
            )
            await writer.drain()
            if b"/never" in head:
                await reader.read(1)  # the client gives up on the connection
                return
            await asyncio.sleep(0.1)
            writer.write(b"0\r\n\r\n")
            rounds.append("ended")

    async with raw_server(handler) as (url, writers):
        http = client(url)
        try:
            for _ in range(3):
                response = await http.post("x", b"{}", "application/json")
                assert await response.readany() == b"data: [DONE]\n\n"
                response.close(ended=True)
                await asyncio.sleep(0.2)  # the last chunk arrives meanwhile
            assert len(writers) == 1  # one connection, kept each time
            response = await http.post("never", b"{}", "application/json")
            assert await response.readany() == b"data: [DONE]\n\n"
            response.close(ended=True)
            await asyncio.sleep(END_GRACE + 0.2)
            again = await http.post("x", b"{}", "application/json")
            assert await again.readany() == b"data: [DONE]\n\n"
            again.close(ended=True)
            await asyncio.sleep(0.2)
        finally:
            await http.aclose()
    assert rounds == ["ended"] * 4
    assert len(writers) == 2  # the one never ended was closed, not reused


async def test_a_reader_slower_than_the_upstream_holds_the_upstream_back() -> None:
    # More than the client buffers: the server's writes block until the body is read.
    piece = b"x" * 65536
    pieces = 64
    written = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * pieces))
        for _ in range(pieces):
            writer.write(piece)
            await writer.drain()
            written += 1

    async with raw_server(handler) as (url, _):
        http = client(url)
        try:
            response = await http.post("x", b"{}", "application/json")
            await asyncio.sleep(0.5)
            assert written < pieces  # held back, not all buffered in Parley
            assert len(await response.read()) == len(piece) * pieces
            assert written == pieces
        finally:
            await http.aclose()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        HTTPClient("ftp://example.com", {}, connect_timeout=1, read_timeout=1, idle=1)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl, as on any Debian)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *names, *files], check=True, capture_output=True)
    return cert, key


async def test_an_https_upstream_is_reached_over_verified_tls(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")

    async with raw_server(handler, tls) as (url, _):
        assert url.startswith("https://")
        # Not trusted (the system's roots only): refused at the handshake.
        untrusted = client(url)
        try:
            with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.post("x", b"{}", "application/json")
        finally:
            await untrusted.aclose()
        # Trusted as a root (OpenSSL reads SSL_CERT_FILE): the request goes through.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = client(url)
        try:
            response = await trusted.post("x", b"{}", "application/json")
            assert (response.status, await response.read()) == (200, b"secret")
        finally:
            await trusted.aclose()
