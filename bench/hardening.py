"""The hardening campaigns at scale against real `parley serve` processes, and the
table of what went wrong: 5xx, envelope violations, missing request-ids, dropped
connections, hangs and lost usage.

    .venv/bin/python bench/hardening.py [--fuzz 3000] [--outage 10] [--slow 300]

Needs PostgreSQL and Redis as the tests do (TEST_POSTGRES_URL, TEST_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h11
import httpx
from hypothesis.errors import NonInteractiveExampleWarning

from tests.faultproxy import fault_proxy
from tests.fuzz.checks import RawConnection, Violation, check, sse_events
from tests.fuzz.strategies import KNOWN_CASES, api_call
from tests.pg import REDIS_URL, fresh_database, fresh_redis_prefix, run_sync
from tests.serverproc import ParleyProcess, create_key

MODEL = """
[[models]]
id = "scripted-1"
engine = "scripted"
slots = {slots}
token_delay = {delay}
"""


@dataclass
class Row:
    what: str
    sent: int = 0
    counts: Counter[str] = field(default_factory=Counter)


def start(tmp: Path, name: str, config: str) -> ParleyProcess:
    return ParleyProcess(tmp / name, config=config).start()


def hostport(server: ParleyProcess) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def classify(row: Row, exc: BaseException) -> None:
    text = str(exc)
    if "5xx" in text:
        row.counts["5xx"] += 1
    elif "request-id" in text:
        row.counts["missing request-id"] += 1
    elif "dropped" in text or "closed after" in text or isinstance(exc, ConnectionError):
        row.counts["dropped connections"] += 1
    elif isinstance(exc, TimeoutError):
        row.counts["hangs"] += 1
    else:
        row.counts["envelope violations"] += 1


def fuzz(tmp: Path, examples: int) -> Row:
    row = Row("fuzzed requests (every route, plain and stream; PostgreSQL)")
    with fresh_database() as url:
        config = f'queue_size = 64\nbatch_worker = false\ndatabase_url = "{url}"\n'
        server = start(tmp, "fuzz", config + MODEL.format(slots=2, delay=0))
        try:
            admin = create_key(server, "admin", admin=True)
            victim = create_key(server, "victim", want_id=True)
            conn = RawConnection(*hostport(server), timeout=30)
            strategy = api_call()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NonInteractiveExampleWarning)
                calls = list(KNOWN_CASES) + [strategy.example() for _ in range(examples)]
            for call in calls:
                headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
                headers["x-api-key"] = admin if call.admin else server.api_key
                headers.update(call.headers)
                target = call.target.replace("{key_id}", victim)
                row.sent += 1
                try:
                    answer = conn.request(call.method, target, headers, call.body or b"")
                    check(answer, stream=call.stream, label=target, injected=call.injected)
                except (Violation, OSError) as exc:
                    classify(row, exc)
                    conn.close()
                except h11.LocalProtocolError:  # a request the client itself cannot send
                    row.sent -= 1
                    conn.close()
        finally:
            server.stop()
    return row


def message(stream: bool = False, words: int = 3) -> bytes:
    body = {
        "model": "scripted-1",
        "max_tokens": 2000,
        "stream": stream,
        "messages": [{"role": "user", "content": f"count: {words}"}],
    }
    return json.dumps(body).encode()


def traffic(server: ParleyProcess, seconds: float, row: Row, stop: threading.Event) -> int:
    """Requests one after another on keep-alive connections; returns the 200s."""
    ok = 0
    conn = RawConnection(*hostport(server), timeout=30)
    headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
    began = time.monotonic()
    i = 0
    while not stop.is_set() and time.monotonic() - began < seconds:
        i += 1
        row.sent += 1
        t = time.monotonic()
        try:
            answer = conn.request("POST", "/v1/messages", headers, message(stream=i % 2 == 0))
        except (Violation, OSError) as exc:
            classify(row, exc)
            conn.close()
            continue
        if time.monotonic() - t > 10:
            row.counts["hangs"] += 1
        if answer.status == 200:
            ok += 1
        elif answer.status >= 500:
            if answer.headers.get("x-should-retry") != "true":
                row.counts["5xx without x-should-retry"] += 1
            row.counts["retryable 503/529 (expected)"] += 1
        try:
            check(answer, stream=i % 2 == 0, label="traffic", injected=answer.status >= 500)
        except Violation as exc:
            classify(row, exc)
    conn.close()
    return ok


def usage_requests(url: str) -> int:
    from parley.store.database import open_database
    from parley.store.usage import UsageStore

    async def read() -> int:
        engine = await open_database(url)
        try:
            return sum(r.counts["requests"] for r in await UsageStore(engine).rows())
        finally:
            await engine.dispose()

    return run_sync(read())


def outage(tmp: Path, dependency: str, mode: str, seconds: float) -> Row:
    row = Row(f"{dependency} {mode} for {seconds:g} s during traffic")
    with fresh_database() as pg, fresh_redis_prefix() as prefix:
        target = pg if dependency == "PostgreSQL" else REDIS_URL
        with fault_proxy(target) as (proxy, proxied):
            db = proxied if dependency == "PostgreSQL" else pg
            config = f'database_url = "{db}"\ndatabase_timeout = 2\ndatabase_connect_timeout = 2\n'
            if dependency == "Redis":
                config += f'redis_url = "{proxied}"\nredis_prefix = "{prefix}"\n'
            server = start(tmp, f"{dependency}-{mode}", config + MODEL.format(slots=4, delay=0))
            stop = threading.Event()
            results: list[int] = []
            workers = [
                threading.Thread(
                    target=lambda: results.append(traffic(server, seconds * 3, row, stop))
                )
                for _ in range(4)
            ]
            for w in workers:
                w.start()
            time.sleep(seconds)
            proxy.mode = mode  # type: ignore[assignment]
            time.sleep(seconds)
            proxy.mode = "pass"
            for w in workers:
                w.join()
            server.stop()
            logs = server.logs()
        row.counts["tracebacks in the log"] += logs.count("Traceback")
        lost = sum(results) - usage_requests(pg)
        row.counts["lost usage"] += max(0, lost)
    return row


def overload(tmp: Path) -> Row:
    row = Row("200 concurrent requests, queue 32")
    server = start(tmp, "overload", "queue_size = 32\n" + MODEL.format(slots=2, delay=0.01))

    async def one(http: httpx.AsyncClient) -> None:
        try:
            response = await http.post("/v1/messages", content=message(words=20))
        except httpx.HTTPError:
            row.counts["dropped connections"] += 1
            return
        if response.status_code == 529 and response.headers.get("x-should-retry") != "true":
            row.counts["529 without x-should-retry"] += 1
        if response.status_code not in (200, 529):
            row.counts["5xx"] += 1

    async def run() -> None:
        headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=headers, limits=limits, timeout=60
        ) as http:
            await asyncio.gather(*(one(http) for _ in range(200)))

    row.sent = 200
    try:
        asyncio.run(run())
    finally:
        server.stop()
    return row


def drain(tmp: Path) -> Row:
    row = Row("SIGTERM with 20 long, 20 short and 20 queued streams")
    config = "drain_timeout = 3\nqueue_size = 40\n" + MODEL.format(slots=40, delay=0.1)
    server = start(tmp, "drain", config)
    assert server.proc is not None

    async def stream(http: httpx.AsyncClient, words: int, started: asyncio.Event) -> None:
        try:
            async with http.stream("POST", "/v1/messages", content=message(True, words)) as r:
                started.set()
                raw = b"".join([c async for c in r.aiter_bytes()])
            if sse_events(raw)[-1][0] not in ("message_stop", "error"):
                row.counts["streams cut without message_stop or error"] += 1
        except httpx.HTTPError:
            row.counts["dropped connections"] += 1

    async def run() -> None:
        headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
        async with httpx.AsyncClient(
            base_url=server.base_url,
            headers=headers,
            timeout=60,
            limits=httpx.Limits(max_connections=100),
        ) as http:
            started = [asyncio.Event() for _ in range(60)]
            words = [500] * 20 + [20] * 40
            tasks = [
                asyncio.create_task(stream(http, n, e)) for n, e in zip(words, started, strict=True)
            ]
            await asyncio.gather(*(e.wait() for e in started))
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*tasks)

    row.sent = 60
    asyncio.run(run())
    server.proc.wait(60)
    stored = usage_requests(f"sqlite:///{server.data_dir / 'parley.db'}")
    row.counts["lost usage"] += 60 - stored
    return row


def slow_clients(tmp: Path, n: int) -> Row:
    row = Row(f"{n} slowloris connections, 100 unfinished bodies (header/body timeout 10/15 s)")
    server = start(tmp, "slow", "max_connections = 2000\n" + MODEL.format(slots=2, delay=0))
    host, port = hostport(server)
    socks: list[socket.socket] = []
    try:
        for i in range(n + 100):
            sock = socket.create_connection((host, port), timeout=5)
            if i < n:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: ")
            else:
                sock.sendall(
                    b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"
                )
            socks.append(sock)
        row.sent = len(socks)
        deadline = time.monotonic() + 30
        open_ = set(range(len(socks)))
        while open_ and time.monotonic() < deadline:
            for i in list(open_):
                socks[i].settimeout(0.01)
                try:
                    if socks[i].recv(65536) == b"":
                        open_.discard(i)
                except TimeoutError:
                    pass
                except ConnectionError:
                    open_.discard(i)
            time.sleep(0.2)
        row.counts["not closed by the server within 30 s"] += len(open_)
    finally:
        for sock in socks:
            sock.close()
        server.stop()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fuzz", type=int, default=3000)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--slow", type=int, default=300)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows: list[Row] = []
    with TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        rows.append(fuzz(tmp, args.fuzz))
        rows.append(overload(tmp))
        for dependency in ("PostgreSQL", "Redis"):
            for mode in ("refuse", "reset", "blackhole"):
                rows.append(outage(tmp, dependency, mode, args.outage))
                print(f"  done: {rows[-1].what}", flush=True)
        rows.append(drain(tmp))
        rows.append(slow_clients(tmp, args.slow))
    print(f"load average at end: {os.getloadavg()}\n")
    print("| what | sent | result |\n|---|---|---|")
    for row in rows:
        bad = {k: v for k, v in row.counts.items() if v}
        result = ", ".join(f"{v} {k}" for k, v in sorted(bad.items())) or "all clean"
        print(f"| {row.what} | {row.sent} | {result} |")


if __name__ == "__main__":
    main()
