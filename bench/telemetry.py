"""What the operator's view costs a request: metrics on, off, and with tracing.

In-process, on the scripted engine (no model, no delay), so that what is left is
Parley's own path: one httpx client sends plain `POST /v1/messages` requests to
the app over the ASGI transport (no sockets), one at a time, to four apps built
the same way but for:

- `off`: `metrics = "off"` and no tracing (nothing is counted), twice (`off-again`,
  the noise floor: two identical apps differ by this much);
- `metrics`: the default, `metrics = "open"` (what every request pays);
- `traced`: metrics and OpenTelemetry spans, handed to an exporter that drops
  them (the cost of making the spans, not of sending them).

Rounds alternate between the apps, in a different order each round, so that drift
in the machine's load is shared. It prints the median and mean latency of each,
the CPU time per request (this process's, threads included), the differences from
`off` in microseconds, and then what a shared machine cannot blur: the metric
calls of one request and the spans of one request, each timed alone in a loop.
Run from the repository root:

    .venv/bin/python bench/telemetry.py [--requests 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.conftest

import httpx  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402

from parley.config import Tier  # noqa: E402
from parley.protocol.responses import Usage  # noqa: E402
from parley.services import Services, start_services  # noqa: E402
from parley.telemetry.metrics import PrometheusMetrics  # noqa: E402
from parley.telemetry.tracing import OtelTracing  # noqa: E402
from tests.conftest import asgi_client, old_sdk_headers, scripted_settings  # noqa: E402

BODY = {
    "model": "scripted",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "say: The quick brown fox jumps over the lazy dog."}],
}
# Limits far above what the run sends: the limiter still runs, it never refuses.
TIERS = {
    "default": Tier(
        requests_per_minute=10**9,
        input_tokens_per_minute=10**12,
        output_tokens_per_minute=10**12,
    )
}


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _start(name: str, data: Path) -> Services:
    settings = scripted_settings(
        data / name, tiers=TIERS, metrics="off" if name.startswith("off") else "open"
    )
    tracing = OtelTracing.exporting_to(_Dropped()) if name == "traced" else None
    return await start_services(settings, tracing=tracing)


async def _send(http: httpx.AsyncClient, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.post("/v1/messages", json=BODY)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(response.text)
    return latencies


async def bench(requests: int, rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies of every request, and CPU seconds used, per app."""
    names = ["off", "off-again", "metrics", "traced"]
    results: dict[str, list[float]] = {name: [] for name in names}
    cpu = dict.fromkeys(names, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        apps = {name: await _start(name, Path(tmp)) for name in names}
        try:
            clients = {}
            for name, svc in apps.items():
                key = (await svc.keys.store.create("bench")).secret
                clients[name] = asgi_client(svc, old_sdk_headers(key))
            for name in names:
                await _send(clients[name], 50)  # warm-up
            for r in range(rounds):
                # A different order each round: none always runs first, or last.
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    started = time.process_time()
                    results[name] += await _send(clients[name], requests)
                    cpu[name] += time.process_time() - started
            for client in clients.values():
                await client.aclose()
        finally:
            for svc in apps.values():
                await svc.aclose()
    return results, cpu


def metric_calls_us() -> float:
    """The metric calls of one plain message (edge, first token, tokens), timed alone."""
    metrics = PrometheusMetrics()
    usage = Usage(input_tokens=12, output_tokens=9)

    def one_request() -> None:
        metrics.request_started()
        metrics.first_token("scripted-1", 0.0012)
        metrics.tokens("scripted-1", "interactive", usage)
        metrics.request_finished("/v1/messages", "POST", 200, "scripted-1", 0.0021)

    n = 100_000
    return min(timeit.repeat(one_request, number=n, repeat=5)) / n * 1e6


def tracing_calls_us() -> float:
    """The spans of one plain message (server span, seven children), made alone."""
    tracing = OtelTracing.exporting_to(_Dropped())
    headers = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]

    def one_request() -> None:
        request = tracing.request_span("POST", "/v1/messages", "req_011abc", headers)
        for name in ("auth", "budget", "prepare", "admit", "open"):
            with tracing.span(name):
                pass
        generation = tracing.start_span("generation")
        generation.add_event("first_token", {"parley.time_to_first_token_s": 0.001})
        generation.set_attribute("gen_ai.usage.output_tokens", 9)
        generation.end()
        with tracing.span("settle"):
            pass
        tracing.end_request_span(request, "/v1/messages", 200)

    n = 5_000
    return min(timeit.repeat(one_request, number=n, repeat=3)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per app per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results, cpu = asyncio.run(bench(args.requests, args.rounds))
    base = results["off"]
    base_cpu = cpu["off"] / len(base)
    print(
        f"\n{'app':<10}{'requests':>9}{'p50 ms':>9}{'mean ms':>9}{'+p50 us':>9}{'+mean us':>9}"
        f"{'cpu us':>9}{'+cpu us':>9}"
    )
    for name, latencies in results.items():
        p50, mean = statistics.median(latencies), statistics.fmean(latencies)
        added_p50 = (p50 - statistics.median(base)) * 1e6
        added_mean = (mean - statistics.fmean(base)) * 1e6
        per_request = cpu[name] / len(latencies)
        print(
            f"{name:<10}{len(latencies):>9}{p50 * 1e3:>9.3f}{mean * 1e3:>9.3f}"
            f"{added_p50:>9.1f}{added_mean:>9.1f}{per_request * 1e6:>9.0f}"
            f"{(per_request - base_cpu) * 1e6:>9.1f}"
        )
    print(f"\nmetric calls of one request, alone: {metric_calls_us():.2f} us")
    print(f"spans of one request, alone: {tracing_calls_us():.1f} us")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
