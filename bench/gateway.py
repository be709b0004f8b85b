"""Parley's own overhead: Parley in front of an instant fake upstream, against the
fake upstream called directly.

Starts the scripted OpenAI-compatible server from tests/upstream/fake_openai.py
(it answers at once: a short reply, no delay between chunks) and a `parley serve`
with one model whose backend is that server. Then, for plain and streamed
requests at each concurrency, it sends the same number of requests straight to
the fake (`POST /v1/chat/completions`) and through Parley (`POST /v1/messages`),
and prints requests/s and latency p50/p99 for both, with Parley/direct ratios and
Parley's added latency, all from the same run. Run from the repository root:

    .venv/bin/python bench/overhead.py [--requests N] [--concurrency 1,16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.serverproc and the fake upstream

import httpx  # noqa: E402

from tests.serverproc import ParleyProcess  # noqa: E402
from tests.upstream.procs import FakeUpstreamProcess  # noqa: E402

MODEL = "bench-up"
PROMPT = "say: The quick brown fox jumps over the lazy dog."
# Limits far above what the run sends: the limiter still runs, it never refuses.
CONFIG = """
[tiers.default]
requests_per_minute = 100000000
input_tokens_per_minute = 1000000000
output_tokens_per_minute = 1000000000

[[models]]
id = "{model}"
context_window = 8192
max_output_tokens = 256

[[models.backends]]
engine = "openai"
base_url = "{url}"
model = "fake"
"""


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[98] * 1000


Send = Callable[[httpx.AsyncClient], Awaitable[None]]


async def load(send: Send, concurrency: int, total: int) -> Result:
    """`total` requests by `concurrency` workers, on connections of their own: a pool
    kept from an earlier cell would hold connections the server has closed since."""
    latencies: list[float] = []
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await send(client)
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return Result(total, time.perf_counter() - started, latencies)


def sender(url: str, body: dict[str, Any], headers: dict[str, str], marker: bytes) -> Send:
    async def send(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            data = await response.aread()
        if response.status_code != 200 or marker not in data:
            raise RuntimeError(f"unexpected answer {response.status_code}: {data[:300]!r}")

    return send


def senders(fake_url: str, parley: ParleyProcess, stream: bool) -> tuple[Send, Send]:
    direct = sender(
        f"{fake_url}/chat/completions",
        {
            "model": "fake",
            "max_tokens": 64,
            "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}],
        },
        {},
        b"[DONE]" if stream else b"chat.completion",
    )
    through = sender(
        f"{parley.base_url}/v1/messages",
        {
            "model": MODEL,
            "max_tokens": 64,
            "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}],
        },
        {"x-api-key": parley.api_key, "anthropic-version": "2023-06-01"},
        b"message_stop" if stream else b'"end_turn"',
    )
    return direct, through


async def measure(
    fake_url: str, parley: ParleyProcess, levels: list[int], requests: int
) -> list[tuple[str, int, Result, Result]]:
    rows: list[tuple[str, int, Result, Result]] = []
    for stream in (False, True):
        direct, through = senders(fake_url, parley, stream)
        for concurrency in levels:
            # Warm both paths (imports, caches, the database) before measuring.
            await load(direct, concurrency, concurrency * 2)
            await load(through, concurrency, concurrency * 2)
            base = await load(direct, concurrency, requests)
            proxied = await load(through, concurrency, requests)
            rows.append(("stream" if stream else "plain", concurrency, base, proxied))
            print(
                f"  {rows[-1][0]:6} c={concurrency:<3} direct {base.rps:8.1f} req/s  "
                f"parley {proxied.rps:8.1f} req/s",
                flush=True,
            )
    return rows


def report(rows: list[tuple[str, int, Result, Result]]) -> None:
    header = (
        f"{'mode':6} {'conc':>4} | {'direct r/s':>10} {'parley r/s':>10} {'ratio':>6} | "
        f"{'p50 dir':>8} {'p50 par':>8} {'added':>7} {'ratio':>6} | "
        f"{'p99 dir':>8} {'p99 par':>8} {'added':>7} {'ratio':>6}"
    )
    print()
    print("latencies in ms; ratio = parley / direct; added = parley - direct")
    print(header)
    print("-" * len(header))
    for mode, concurrency, base, proxied in rows:
        print(
            f"{mode:6} {concurrency:>4} | {base.rps:>10.1f} {proxied.rps:>10.1f} "
            f"{proxied.rps / base.rps:>6.2f} | "
            f"{base.p50_ms:>8.2f} {proxied.p50_ms:>8.2f} {proxied.p50_ms - base.p50_ms:>7.2f} "
            f"{proxied.p50_ms / base.p50_ms:>6.2f} | "
            f"{base.p99_ms:>8.2f} {proxied.p99_ms:>8.2f} {proxied.p99_ms - base.p99_ms:>7.2f} "
            f"{proxied.p99_ms / base.p99_ms:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per cell (default 400)")
    parser.add_argument("--concurrency", default="1,16,64", help="levels (default 1,16,64)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="parley-overhead-") as tmp:
        fake = FakeUpstreamProcess(Path(tmp) / "fake.log", name="fake").start()
        parley = ParleyProcess(
            Path(tmp) / "parley", config=CONFIG.format(model=MODEL, url=fake.url)
        )
        try:
            parley.start()
            print(f"fake upstream {fake.url}, parley {parley.base_url}")
            print(f"{args.requests} requests per cell\n")
            rows = asyncio.run(measure(fake.url, parley, levels, args.requests))
        finally:
            parley.stop()
            fake.stop()
    report(rows)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
