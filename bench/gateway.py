"""Side by side: the gateway path. An instant fake upstream called directly, through
Parley and through LiteLLM's proxy.

Starts the scripted OpenAI-compatible server from tests/engines/upstream/fake_openai.py (it
answers at once: a nine-word reply, no delay between chunks), a `parley serve` whose
one model has that server as its `openai` backend, and LiteLLM's proxy (installed by
`make peer-litellm` into .peers/litellm; `hosted_vllm/<model>` on the same server, one
worker, master key, no database). Then, for plain and streamed requests at each
concurrency, the same client sends the same Anthropic-in work to Parley and LiteLLM
(`POST /v1/messages`) and the equivalent OpenAI chat request straight to the fake
(`POST /v1/chat/completions`), round-robin over the targets, and prints requests/s and
latency p50/p99 for each, Parley's added p50 over direct, and Parley/LiteLLM ratios,
with the load average. A fourth target, `passthrough` (bench/passthrough.py), is the
floor of Parley's stack: the same server and client libraries forwarding the OpenAI
request untouched, so the table shows what the stack costs apart from Parley's work.
With `--against REV`, a fifth, `before`, is Parley at that git revision (checked out
into a temporary worktree): on a machine whose speed moves from minute to minute, a
change is judged against its own past in the same run, not against an old table.
Run from the repository root:

    .venv/bin/python bench/gateway.py [--requests N] [--rounds R] [--concurrency 1,16,64]
        [--targets direct,parley,litellm,passthrough] [--against REV]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for bench.peers, tests.serverproc and the fake upstream

import aiohttp  # noqa: E402

from bench.peers import (  # noqa: E402
    LITELLM,
    LiteLLMProcess,
    fmt,
    free_port,
    load_avg,
    machine,
    rotations,
    stop_process,
    wait_ready,
)
from tests.engines.upstream.procs import FakeUpstreamProcess  # noqa: E402
from tests.serverproc import ParleyProcess  # noqa: E402

MODEL = "bench-up"
PROMPT = "say: The quick brown fox jumps over the lazy dog."
TARGETS = ("direct", "parley", "litellm", "passthrough", "before")
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


def percentile_ms(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1] * 1000


Send = Callable[[aiohttp.ClientSession], Awaitable[None]]


async def load(send: Send, concurrency: int, total: int) -> Result:
    """`total` requests by `concurrency` workers, on connections of their own: a pool
    kept from an earlier cell would hold connections the server has closed since.
    The client is aiohttp: with httpx the client itself was the bottleneck (the
    fake upstream called directly at 64 connections: 176 requests/s with httpx,
    4,800 with aiohttp, on this 2-core class of machine)."""
    latencies: list[float] = []
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker(client: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await send(client)
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return Result(total, time.perf_counter() - started, latencies)


def sender(url: str, body: dict[str, Any], headers: dict[str, str], marker: bytes) -> Send:
    data = json.dumps(body).encode()
    headers = {**headers, "content-type": "application/json"}

    async def send(client: aiohttp.ClientSession) -> None:
        async with client.post(url, data=data, headers=headers) as response:
            answer = await response.read()
        if response.status != 200 or marker not in answer:
            raise RuntimeError(f"unexpected answer {response.status}: {answer[:300]!r}")

    return send


def senders(bases: dict[str, tuple[str, str]], stream: bool) -> dict[str, Send]:
    """The same work for each target: an OpenAI chat request to the fake itself, the
    Anthropic Messages request to the gateways. `bases` maps a target to (URL, key)."""
    out: dict[str, Send] = {}
    for name, (base, key) in bases.items():
        if name in ("direct", "passthrough"):
            out[name] = sender(
                f"{base}/chat/completions",
                {
                    "model": "fake",
                    "max_tokens": 64,
                    "stream": stream,
                    "messages": [{"role": "user", "content": PROMPT}],
                },
                {},
                b"[DONE]" if stream else b"chat.completion",
            )
        else:
            out[name] = sender(
                f"{base}/v1/messages",
                {
                    "model": MODEL,
                    "max_tokens": 64,
                    "stream": stream,
                    "messages": [{"role": "user", "content": PROMPT}],
                },
                {"x-api-key": key, "anthropic-version": "2023-06-01"},
                b"message_stop" if stream else b"lazy dog.",
            )
    return out


@dataclass
class Row:
    mode: str
    concurrency: int
    runs: dict[str, list[Result]]
    load: str

    def rps(self, name: str) -> float:
        return statistics.median(r.rps for r in self.runs[name])

    def latencies(self, name: str) -> list[float]:
        return [x for r in self.runs[name] for x in r.latencies]

    def p50(self, name: str) -> float:
        return percentile_ms(self.latencies(name), 50)

    def p99(self, name: str) -> float:
        return percentile_ms(self.latencies(name), 99)


async def measure(
    bases: dict[str, tuple[str, str]], levels: list[int], requests: int, rounds: int
) -> list[Row]:
    rows: list[Row] = []
    names = list(bases)
    for stream in (False, True):
        sends = senders(bases, stream)
        mode = "stream" if stream else "plain"
        for concurrency in levels:
            start_load = load_avg()
            # Warm every path (lazy imports, caches, the database, connections) first:
            # a process's first hundred requests are slower, which would land on
            # whichever cell came first.
            for name in names:
                await load(sends[name], concurrency, max(100, concurrency * 2))
            runs: dict[str, list[Result]] = {name: [] for name in names}
            for order in rotations(names, rounds):
                for name in order:
                    runs[name].append(await load(sends[name], concurrency, requests))
            rows.append(Row(mode, concurrency, runs, f"{start_load} -> {load_avg()}"))
            figures = "  ".join(f"{n} {rows[-1].rps(n):7.1f}" for n in names)
            print(f"  {mode:6} c={concurrency:<3} req/s: {figures}  load {rows[-1].load}")
    return rows


def report(rows: list[Row], names: list[str]) -> None:
    short = {
        "direct": "dir",
        "parley": "par",
        "litellm": "lite",
        "passthrough": "pass",
        "before": "bef",
    }
    cols = [short[n] for n in names]
    gateways = [n for n in names if n != "direct"]
    both = "parley" in names and "litellm" in names

    def group(suffix: str) -> str:
        return " ".join(f"{c + suffix:>8}" for c in cols)

    head = (
        f"{'mode':6} {'conc':>4} | {group(' r/s')} | {group(' p50')} | {group(' p99')} | "
        + " ".join(f"{short[g] + ' +p50':>9}" for g in gateways)
        + (f" | {'par/lite r/s':>12} {'lite/par p50':>12}" if both else "")
        + " | load (1/5/15 min) start -> end"
    )
    print()
    print(
        "requests/s: median over rounds; latencies in ms over all rounds' requests; "
        "+p50 = p50 - direct p50;\npar/lite r/s > 1 and lite/par p50 > 1 mean Parley is faster"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        line = (
            f"{row.mode:6} {row.concurrency:>4} | "
            + " ".join(f"{row.rps(n):>8.1f}" for n in names)
            + " | "
            + " ".join(f"{row.p50(n):>8.2f}" for n in names)
            + " | "
            + " ".join(f"{row.p99(n):>8.2f}" for n in names)
            + " | "
        )
        if "direct" in names:
            line += " ".join(f"{row.p50(g) - row.p50('direct'):>9.2f}" for g in gateways)
        else:
            line += " ".join(f"{'-':>9}" for _ in gateways)
        if both:
            line += (
                f" | {fmt(row.rps('parley') / row.rps('litellm'), 2):>12} "
                f"{fmt(row.p50('litellm') / row.p50('parley'), 2):>12}"
            )
        print(line + f" | {row.load}")


@dataclass
class PassthroughProcess:
    log_path: Path
    upstream: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        port = free_port()
        args = [sys.executable, str(ROOT / "bench" / "passthrough.py"), "--port", str(port)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [*args, "--upstream", self.upstream], stdout=out, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        wait_ready(self.proc, f"{url}/health", self.log_path, 60, "passthrough")
        return url

    def stop(self) -> None:
        stop_process(self.proc)


def workers_flag_supported() -> bool:
    """Whether this `parley serve` takes --workers (older revisions do not)."""
    out = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "--workers" in out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per run (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target (default 3)")
    parser.add_argument("--concurrency", default="1,16,64", help="levels (default 1,16,64)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="of direct,parley,litellm")
    parser.add_argument(
        "--parley-workers",
        type=int,
        default=None,
        help="pass `--workers N` to `parley serve` (when it has that option)",
    )
    parser.add_argument("--litellm", type=Path, default=LITELLM, help="the litellm command")
    parser.add_argument("--litellm-workers", type=int, default=1, help="--num_workers (1)")
    parser.add_argument("--log-dir", type=Path, help="keep the servers' logs here")
    parser.add_argument("--against", help="also Parley at this git revision (`before`)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    levels = [int(c) for c in args.concurrency.split(",")]
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if args.against and "before" not in names:
        names.append("before")
    if "before" in names and not args.against:
        parser.error("the target `before` needs --against REV")
    if set(names) - set(TARGETS) or not names or args.rounds < 1 or args.requests < 2:
        parser.error("bad --targets, --rounds or --requests")

    print(f"machine: {machine()}")
    print(f"load average at start (1/5/15 min): {load_avg()}")
    extra: list[str] = []
    if args.parley_workers is not None:
        if workers_flag_supported():
            # Several processes on one port: a fixed port, not 0 (which each would pick).
            extra = ["--workers", str(args.parley_workers), "--port", str(free_port())]
            print(f"parley: --workers {args.parley_workers}")
        else:
            print(
                f"parley: `parley serve --help` lists no --workers option here: "
                f"--parley-workers {args.parley_workers} ignored, one process"
            )
    with tempfile.TemporaryDirectory(prefix="parley-gateway-") as tmp_name:
        # Parley prints a key only into an empty data dir: a fresh folder every run.
        tmp = (
            Path(args.log_dir) / time.strftime("%Y%m%d-%H%M%S") if args.log_dir else Path(tmp_name)
        )
        tmp.mkdir(parents=True, exist_ok=True)
        print(f"server logs: {tmp}")
        fake = FakeUpstreamProcess(tmp / "fake.log", name="fake").start()
        parley = ParleyProcess(
            tmp / "parley", config=CONFIG.format(model=MODEL, url=fake.url), args=extra
        )
        litellm = LiteLLMProcess(
            args.litellm, tmp / "litellm", MODEL, fake.url, workers=args.litellm_workers
        )
        passthrough = PassthroughProcess(tmp / "passthrough.log", fake.url)
        before: ParleyProcess | None = None
        if args.against:
            tree = Path(tmp_name) / "before-tree"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.against],
                capture_output=True,
                check=True,
            )
            before_extra = list(extra)
            if "--port" in before_extra:  # its own port, not the working tree's
                before_extra[before_extra.index("--port") + 1] = str(free_port())
            before = ParleyProcess(
                tmp / "before",
                config=CONFIG.format(model=MODEL, url=fake.url),
                args=before_extra,
                env={"PYTHONPATH": str(tree / "src")},
            )
        try:
            bases: dict[str, tuple[str, str]] = {}
            for name in names:
                started = time.perf_counter()
                if name == "direct":
                    bases[name] = (fake.url, "")
                elif name == "parley":
                    parley.start()
                    bases[name] = (parley.base_url, parley.api_key)
                elif name == "passthrough":
                    bases[name] = (passthrough.start(), "")
                elif name == "before":
                    assert before is not None
                    before.start()
                    bases[name] = (before.base_url, before.api_key)
                else:
                    litellm.start()
                    bases[name] = (litellm.base_url, litellm.master_key)
                took = time.perf_counter() - started
                print(f"{name}: {bases[name][0]}  ({took:.1f} s to start)")
            print(f"{args.requests} requests per run, {args.rounds} rounds per cell\n")
            rows = asyncio.run(measure(bases, levels, args.requests, args.rounds))
        finally:
            parley.stop()
            litellm.stop()
            passthrough.stop()
            if before is not None:
                before.stop()
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    capture_output=True,
                    check=False,
                )
            fake.stop()
    report(rows, names)
    print(f"\nload average at end: {load_avg()}")


if __name__ == "__main__":
    main()
