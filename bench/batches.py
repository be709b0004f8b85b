"""Message Batches at scale: create, process and read back a batch of N requests on the
scripted engine (no model, no token delay), against a real `parley serve` process.

Prints requests/s for each phase and the server's peak resident memory (VmHWM) after
each, for every size asked for: memory must stay flat as the batch grows, because the
body, the work and the results all stream. Run from the repository root:

    .venv/bin/python bench/batches.py [--sizes 10000 100000] [--slots 4] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.serverproc

import httpx  # noqa: E402

from tests.serverproc import ParleyProcess  # noqa: E402

MODEL = "bench-scripted"
BATCHES = "/v1/messages/batches"


@dataclass
class Phase:
    name: str
    seconds: float
    requests: int
    peak_rss_mib: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")


def config(slots: int, concurrency: int) -> str:
    return f"""
batch_concurrency = {concurrency}
batch_poll_interval = 0.2

[[models]]
id = "{MODEL}"
engine = "scripted"
slots = {slots}
token_delay = 0.0
"""


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body(n: int) -> Iterator[bytes]:
    """The create body, generated as it is sent (about 190 bytes per request)."""
    yield b'{"requests":['
    chunk: list[bytes] = []
    for i in range(n):
        request = {
            "custom_id": f"req-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"say: answer number {i} is ready"}],
            },
        }
        chunk.append((b"," if i else b"") + json.dumps(request).encode())
        if len(chunk) == 1000:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk) + b"]}"


def run(n: int, slots: int, concurrency: int) -> list[Phase]:
    with tempfile.TemporaryDirectory(prefix="parley-bench-batches-") as tmp:
        server = ParleyProcess(Path(tmp), config=config(slots, concurrency)).start()
        assert server.proc is not None
        pid = server.proc.pid
        headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
        phases: list[Phase] = []
        try:
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=600) as http:
                started = time.perf_counter()
                created = http.post(BATCHES, content=body(n))
                created.raise_for_status()
                batch_id = created.json()["id"]
                phases.append(Phase("create", time.perf_counter() - started, n, peak_rss_mib(pid)))

                started = time.perf_counter()
                while True:
                    batch = http.get(f"{BATCHES}/{batch_id}").json()
                    if batch["processing_status"] == "ended":
                        break
                    time.sleep(0.5)
                seconds = time.perf_counter() - started
                succeeded = batch["request_counts"]["succeeded"]
                if succeeded != n:
                    raise SystemExit(f"only {succeeded} of {n} succeeded: {batch}")
                phases.append(Phase("process", seconds, n, peak_rss_mib(pid)))

                started = time.perf_counter()
                lines = 0
                with http.stream("GET", f"{BATCHES}/{batch_id}/results") as results:
                    results.raise_for_status()
                    for _ in results.iter_lines():
                        lines += 1
                seconds = time.perf_counter() - started
                if lines != n:
                    raise SystemExit(f"{lines} result lines for {n} requests")
                phases.append(Phase("results", seconds, n, peak_rss_mib(pid)))
        finally:
            server.stop()
        return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--slots", type=int, default=4, help="engine slots (batch uses n-1)")
    parser.add_argument("--concurrency", type=int, default=8, help="batch_concurrency")
    args = parser.parse_args()
    print(
        f"scripted engine, token_delay 0, slots={args.slots}, "
        f"batch_concurrency={args.concurrency}, SQLite store",
        flush=True,
    )
    print(f"{'requests':>9} {'phase':<8} {'seconds':>8} {'requests/s':>11} {'peak RSS MiB':>13}")
    for n in args.sizes:
        for phase in run(n, args.slots, args.concurrency):
            print(
                f"{n:>9} {phase.name:<8} {phase.seconds:>8.1f} {phase.rate:>11.0f} "
                f"{phase.peak_rss_mib:>13.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
