"""Forced tool calls on the embedded model: do the inputs validate, and how long does one take?

Starts `parley serve` with the bundled SmolLM2 GGUF (one slot) and sends `--calls`
forced calls (`tool_choice: {"type": "tool"}`) through the newest Python SDK,
cycling over the schemas in tests/schemas.py (nested objects, arrays, enums,
bounded numbers and integers, booleans, nullable strings, `$ref`s, a pattern).
Sampling is the API default (temperature 1.0), so calls differ from run to run.
Every input is validated with `jsonschema` against its tool's schema. Run from the
repository root:

    .venv/bin/python bench/tools.py [--calls 100] [--max-tokens 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.serverproc and tests.schemas

import anthropic  # noqa: E402
import jsonschema  # noqa: E402

from parley.config import DEFAULT_MODEL_ID  # noqa: E402
from tests.schemas import PROMPTS, SCHEMAS  # noqa: E402
from tests.serverproc import ParleyProcess  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    config = f'[[models]]\nid = "{DEFAULT_MODEL_ID}"\nslots = 1\nthreads = {args.threads}\n'
    print(f"load average at start: {os.getloadavg()}")
    names = sorted(SCHEMAS)
    latencies: list[float] = []
    output_tokens: list[int] = []
    valid: collections.Counter[str] = collections.Counter()
    tried: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as data_dir:
        server = ParleyProcess(Path(data_dir), config=config).start()
        try:
            client = anthropic.Anthropic(
                base_url=server.base_url, api_key=server.api_key, max_retries=0
            )
            for i in range(args.calls):
                name = names[i % len(names)]
                started = time.perf_counter()
                tried[name] += 1
                try:
                    message = client.messages.create(
                        model=DEFAULT_MODEL_ID,
                        max_tokens=args.max_tokens,
                        messages=[{"role": "user", "content": PROMPTS[name]}],
                        tools=[{"name": name, "input_schema": SCHEMAS[name]}],
                        tool_choice={"type": "tool", "name": name},
                    )
                except anthropic.APIStatusError as exc:
                    failures.append(f"{name}: HTTP {exc.status_code} {exc.message}")
                    print(f"{i + 1:3d} {name:16s} FAILED: {exc}", flush=True)
                    continue
                latencies.append(time.perf_counter() - started)
                output_tokens.append(message.usage.output_tokens)
                calls = [b for b in message.content if b.type == "tool_use"]
                problem = None
                if message.stop_reason != "tool_use" or len(calls) != 1:
                    problem = f"stop_reason {message.stop_reason}, {len(calls)} call(s)"
                else:
                    errors = list(
                        jsonschema.Draft202012Validator(SCHEMAS[name]).iter_errors(calls[0].input)
                    )
                    if errors:
                        problem = "; ".join(e.message for e in errors)
                if problem is None:
                    valid[name] += 1
                else:
                    failures.append(f"{name}: {problem}")
                status = "ok" if problem is None else f"INVALID ({problem})"
                print(
                    f"{i + 1:3d} {name:16s} {latencies[-1] * 1000:7.0f} ms "
                    f"{message.usage.output_tokens:4d} tok  {status}",
                    flush=True,
                )
        finally:
            server.stop()
            if any("HTTP" in f for f in failures):
                print(server.logs()[-4000:])

    print()
    print(f"{'schema':16s} valid/calls")
    for name in names:
        print(f"{name:16s} {valid[name]}/{tried[name]}")
    total = sum(valid.values())
    print()
    print(f"inputs valid: {total}/{args.calls}")
    print(
        f"forced-call latency: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p90 {percentile(latencies, 0.9) * 1000:.0f} ms, "
        f"min {min(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    print(f"output tokens per call: median {statistics.median(output_tokens):.0f}")
    print(f"load average at end: {os.getloadavg()}")
    for failure in failures:
        print(f"  invalid: {failure}")


if __name__ == "__main__":
    main()
