"""Connections that never finish, against a real `parley serve`, with raw sockets:
heads and bodies that stop arriving, clients that stop reading, more connections
than the process allows, and malformed HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

CONFIG = """
header_timeout = 1
body_timeout = 1
write_timeout = 1
max_connections = 40

[[models]]
id = "scripted-1"
engine = "scripted"
slots = 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    process = ParleyProcess(tmp_path_factory.mktemp("conns"), config=CONFIG).start()
    yield process
    process.stop()


def connect(server: ParleyProcess) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything until the server closes; and how long that took."""
    began = time.monotonic()
    chunks = []
    sock.settimeout(limit)
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - began


def envelope(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    pairs = (line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in pairs}
    return status, headers, json.loads(body)


def post_head(server: ParleyProcess, length: int, extra: str = "") -> bytes:
    return (
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
        f"x-api-key: {server.api_key}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n{extra}\r\n"
    ).encode()


def assert_timeout_408(raw: bytes, seconds: float) -> None:
    status, headers, body = envelope(raw)
    assert status == 408, raw
    assert headers["connection"] == "close"
    assert body["type"] == "error"
    assert body["request_id"] == headers["request-id"]
    assert seconds < 5


def test_a_head_that_never_ends_gets_408(server: ParleyProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-slow: ")
        for _ in range(3):  # a byte now and then does not extend the deadline
            time.sleep(0.3)
            sock.sendall(b"a")
        assert_timeout_408(*read_all(sock))


def test_the_next_head_on_a_kept_alive_connection_has_its_own_deadline(
    server: ParleyProcess,
) -> None:
    request = (
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-api-key: "
        + server.api_key.encode()
        + b"\r\nanthropic-version: 2023-06-01\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # idle past the head deadline, within keep-alive: no 408
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost")
        assert_timeout_408(*read_all(sock))


def test_a_head_too_large_is_malformed(server: ParleyProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000)
        raw, seconds = read_all(sock)
    status, headers, body = envelope(raw)
    assert status == 400, raw[:200]
    assert body["request_id"] == headers["request-id"]
    assert seconds < 0.9  # not the head deadline


def test_a_silent_connection_is_closed(server: ParleyProcess) -> None:
    with connect(server) as sock:
        raw, seconds = read_all(sock)
    assert raw == b""
    assert seconds < 5


def test_a_body_that_stops_arriving_gets_408(server: ParleyProcess) -> None:
    with connect(server) as sock:
        sock.sendall(post_head(server, 100) + b'{"model": "scr')
        assert_timeout_408(*read_all(sock))


def test_a_chunked_body_never_finished_gets_408(server: ParleyProcess) -> None:
    head = post_head(server, 0).replace(b"content-length: 0", b"transfer-encoding: chunked")
    with connect(server) as sock:
        sock.sendall(head + b'5\r\n{"a":\r\n')
        assert_timeout_408(*read_all(sock))


def test_a_slow_but_steady_body_is_read(server: ParleyProcess) -> None:
    body = json.dumps(
        {"model": "scripted-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    with connect(server) as sock:
        sock.sendall(post_head(server, len(body), "connection: close\r\n"))
        for i in range(0, len(body), 20):  # each pause under the body timeout
            sock.sendall(body[i : i + 20])
            time.sleep(0.1)
        raw, _ = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


def test_a_client_that_stops_reading_is_let_go(server: ParleyProcess) -> None:
    word = "w" * 2500 + " "  # 10 MB of reply: more than the kernel buffers hold
    body = json.dumps(
        {
            "model": "scripted-1",
            "max_tokens": 4000,
            "stream": True,
            "messages": [{"role": "user", "content": "say: " + word * 4000}],
        }
    ).encode()
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    sock.connect((host, int(port)))
    try:
        sock.sendall(post_head(server, len(body)) + body)
        time.sleep(4)  # never read: the server gives up after write_timeout
        # What is buffered can still be read; then the connection ends without the
        # stream's end (the server cut it: it could not write).
        raw, _ = read_all(sock)
    finally:
        sock.close()
    assert raw.startswith(b"HTTP/1.1 200")
    assert len(raw) < len(body)  # far from all of it
    assert b"event: message_stop" not in raw


def test_malformed_http_gets_the_envelope(server: ParleyProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nbad header line\r\n\r\n")
        raw, _ = read_all(sock)
    status, headers, body = envelope(raw)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert body["request_id"] == headers["request-id"]
    assert headers["connection"] == "close"


def test_past_the_connection_cap_requests_get_a_retryable_529(server: ParleyProcess) -> None:
    held = [connect(server) for _ in range(45)]
    try:
        time.sleep(0.2)
        with connect(server) as sock:
            sock.sendall(
                b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-api-key: "
                + server.api_key.encode()
                + b"\r\n\r\n"
            )
            raw, _ = read_all(sock)
        status, headers, body = envelope(raw)
        assert status == 529, raw
        assert headers["x-should-retry"] == "true"
        assert headers["connection"] == "close"
        assert body["request_id"] == headers["request-id"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(1.5)  # the held ones time out or close; then requests are served again
    with connect(server) as sock:
        sock.sendall(
            b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-api-key: "
            + server.api_key.encode()
            + b"\r\nanthropic-version: 2023-06-01\r\n\r\n"
        )
        raw, _ = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
