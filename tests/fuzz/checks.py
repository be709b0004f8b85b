"""What every answer must be, whatever was asked: never a 5xx for input alone, an
error envelope with the response's `request-id` on every error, a stream that ends
with `message_stop` or an `error` event, and a connection that stays usable unless
the server said `connection: close`."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from typing import Any

import h11

REQUEST_ID = re.compile(r"^req_[A-Za-z0-9]+$")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Violation(AssertionError):
    pass


def check(answer: Answer, *, stream: bool, label: str, injected: bool = False) -> None:
    """Raise Violation with `label` (what was sent) when `answer` breaks a rule.
    `injected`: the request asked the scripted engine for a failure (`fail: TYPE`), so
    a 5xx envelope is what it should get."""

    def fail(why: str) -> None:
        raise Violation(
            f"{why}\n  request: {label}\n  answer: {answer.status} {answer.body[:300]!r}"
        )

    rid = answer.headers.get("request-id", "")
    if not REQUEST_ID.match(rid):
        fail("no request-id header")
    if answer.status >= 500 and not injected:
        fail("a 5xx for a request that only its input could make fail")
    if answer.status >= 400:
        try:
            envelope = json.loads(answer.body)
        except ValueError:
            fail("an error that is not JSON")
        error = envelope.get("error") if isinstance(envelope, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            fail("no error envelope")
        assert isinstance(error, dict)
        if not isinstance(error.get("type"), str):
            fail("no error type")
        # The edge's 413 has neither (api-spec §12).
        if answer.status != 413 and (
            envelope.get("type") != "error" or envelope.get("request_id") != rid
        ):
            fail("envelope without type or the response's request_id")
        return
    if stream and answer.status == 200:
        events = sse_events(answer.body)
        if not events or events[0][0] != "message_start":
            fail("a stream that does not start with message_start")
        last = events[-1][0]
        if last not in ("message_stop", "error"):
            fail(f"a stream that ends with {last}, not message_stop or error")
    elif answer.status == 200 and answer.headers.get("content-type", "").startswith(
        "application/json"
    ):
        try:
            json.loads(answer.body)
        except ValueError:
            fail("a 200 whose body is not JSON")


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    events = []
    for frame in body.decode("utf-8").split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line)
        events.append((lines.get("event", ""), json.loads(lines.get("data", "null"))))
    return events


class RawConnection:
    """One keep-alive HTTP/1.1 connection, read with h11, that reports a connection the
    server dropped without `connection: close` (the client's next pooled request would
    fail with a reset)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._conn = h11.Connection(h11.CLIENT)

    def _open(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self._timeout)
            self._conn = h11.Connection(h11.CLIENT)
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        sock = self._open()
        fresh = self._conn.our_state is h11.IDLE and self._conn.their_state is h11.IDLE
        assert fresh
        all_headers = [("host", f"{self._address[0]}:{self._address[1]}"), *headers.items()]
        all_headers.append(("content-length", str(len(body))))
        encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in all_headers]
        data = self._conn.send(h11.Request(method=method, target=target.encode(), headers=encoded))
        data += self._conn.send(h11.Data(data=body)) if body else b""
        data += self._conn.send(h11.EndOfMessage())
        sock.sendall(data)
        status, response_headers, chunks = 0, {}, []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                received = sock.recv(65536)
                if not received:
                    raise Violation(f"connection dropped without a response ({method} {target})")
                self._conn.receive_data(received)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {
                    k.decode().lower(): v.decode("latin-1") for k, v in event.headers
                }
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        answer = Answer(status, response_headers, b"".join(chunks))
        if self._conn.our_state is h11.MUST_CLOSE or self._conn.their_state is h11.MUST_CLOSE:
            self.close()  # the server said so: a new connection next time
        else:
            self._conn.start_next_cycle()
            if _closed_by_peer(sock):
                raise Violation(
                    f"connection closed after {status} without `connection: close` "
                    f"({method} {target})"
                )
        return answer


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (EOF or reset waiting to be read)."""
    import select
    import time

    time.sleep(0.002)  # a close right after the response arrives within a moment
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionError:
        return True
