"""Micro benchmark of the embedded batch loop (BatchLoop driven directly, no HTTP).

    .venv/bin/python bench/loop.py [--threads 2] [--tokens 128] [--rounds 3]
                                   [--also .venv-default/bin/python]

Each round runs one worker process per interpreter (this one, then each
`--also`), in turn, so builds of llama.cpp installed in different virtual
environments (say GGML_LLAMAFILE=OFF and the default) are measured in the same
run under the same load. A worker loads the bundled GGUF into one BatchLoop
(8 sequences of `--context` tokens, `--threads` threads, a 256-token step) and
measures:

- single-stream decode tokens/s: (tokens - 1) / (last token - first token);
- aggregate tokens/s with 4 and 8 streams submitted together: all their tokens
  over the wall time from submitting to the last token (prompts included);
- time to first token of a ~500-token prompt, uncached, and the prompt rate;
- time to first token of a request sharing a ~1,500-token `cache_control`
  system prompt with an earlier one, against the earlier (uncached) one;
- resident memory after start and at peak.

Tokens are generated past end-of-turn (`ignore_eog`) so every run does the same
work. Figures are the best of the rounds (highest rate, lowest time). The load
average is printed at start and end: on a shared machine read it first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

WORDS = [
    "harbour",
    "anchor",
    "compass",
    "tide",
    "storm",
    "lantern",
    "keeper",
    "rope",
    "sail",
    "island",
    "cliff",
    "gull",
    "wave",
    "chart",
    "star",
    "night",
    "fog",
    "bell",
    "signal",
    "coast",
    "beacon",
    "voyage",
    "current",
    "reef",
    "shore",
    "ship",
    "captain",
    "crew",
    "deck",
    "mast",
    "hull",
    "oar",
    "net",
    "fish",
    "salt",
    "wind",
    "rain",
    "sun",
    "moon",
    "cloud",
]


def chatml(*turns: tuple[str, str]) -> str:
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return text + "<|im_start|>assistant\n"


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    from parley.engines.llamacpp import bundled_model_path
    from parley.engines.llamacpp.jobs import (
        Breakpoint,
        Done,
        EventQueue,
        Failed,
        Job,
        SamplingParams,
        TokenOut,
    )
    from parley.engines.llamacpp.loop import BatchLoop

    result: dict[str, Any] = {"load_start": os.getloadavg()}
    loop = BatchLoop(
        bundled_model_path(),
        sequences=8,
        context_per_sequence=args.context,
        threads=args.threads,
        step_tokens=256,
        cache_bytes=1 << 30,
    )
    loop.start()
    result["build"] = "LLAMAFILE=OFF" if loop.bit_exact else "default (LLAMAFILE on)"
    model = loop.model
    assert model is not None
    result["rss_after_start_mib"] = rss_mib("VmRSS")

    def tokens(text: str) -> list[int]:
        return model.tokenize(text, add_bos=model.add_bos, special=True)

    async def job(prompt: list[int], max_tokens: int, **kw: Any) -> tuple[float, list[float]]:
        """(submit time, arrival time of each token)."""
        queue = EventQueue()
        submitted = time.perf_counter()
        loop.submit(Job(prompt, max_tokens, queue.push, ignore_eog=True, **kw))
        arrivals: list[float] = []
        async for event in queue:
            if isinstance(event, TokenOut):
                arrivals.append(time.perf_counter())
            elif isinstance(event, Failed):
                raise RuntimeError(event.message)
            elif isinstance(event, Done):
                break
        return submitted, arrivals

    def words(rng: random.Random, n_tokens: int, head: str) -> str:
        text = head
        while len(tokens(text)) < n_tokens:
            text += " " + " ".join(rng.choice(WORDS) for _ in range(20))
        return text

    greedy = SamplingParams(temperature=0.0)
    story = tokens(chatml(("user", "Write a long story about a lighthouse keeper.")))
    await job(story, 8, sampling=greedy)  # warm up

    _, arrivals = await job(story, args.tokens, sampling=greedy)
    result["single_tok_s"] = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    rng = random.Random(1)
    for n in (4, 8):
        prompts = [tokens(chatml(("user", words(rng, 30, f"Story {i}:")))) for i in range(n)]
        runs = await asyncio.gather(
            *(
                job(p, args.tokens, sampling=SamplingParams(1.0, seed=i))
                for i, p in enumerate(prompts)
            )
        )
        start = min(s for s, _ in runs)
        end = max(a[-1] for _, a in runs)
        result[f"aggregate_{n}_tok_s"] = sum(len(a) for _, a in runs) / (end - start)

    prompt500 = tokens(chatml(("user", words(rng, 490, "Summarise:"))))
    submitted, arrivals = await job(prompt500, 1, sampling=greedy)
    result["ttft_500_s"] = arrivals[0] - submitted
    result["prompt_500_tokens"] = len(prompt500)
    result["prompt_tok_s"] = len(prompt500) / result["ttft_500_s"]

    system = words(rng, 1500, "You are the harbour master's assistant.")
    head = len(tokens(chatml(("system", system)).removesuffix("<|im_start|>assistant\n")))
    marks = (Breakpoint(head),)
    scope = f"bench-{time.time()}"
    ttft = {}
    for name, question in (("uncached", "Which ships came in?"), ("cached", "Any storms?")):
        prompt = tokens(chatml(("system", system), ("user", question)))
        lease = loop.lookup(scope, prompt, marks)
        # Sampled, not greedy: on a build that is not bit-exact greedy jobs skip the
        # cache, and this measures what restoring costs on every build.
        submitted, arrivals = await job(
            prompt,
            1,
            sampling=SamplingParams(1.0, seed=0),
            cache_scope=scope,
            breakpoints=marks,
            lease=lease,
        )
        ttft[name] = arrivals[0] - submitted
        result[f"reported_read_{name}"] = lease.reported
    result["prefix_tokens"] = head
    result["ttft_1500_uncached_s"] = ttft["uncached"]
    result["ttft_1500_cached_s"] = ttft["cached"]
    result["rss_peak_mib"] = rss_mib("VmHWM")
    result["context_per_sequence"] = loop.context_per_sequence
    loop.close()
    result["load_end"] = os.getloadavg()
    return result


HIGHER = ("single_tok_s", "aggregate_4_tok_s", "aggregate_8_tok_s", "prompt_tok_s")
LOWER = ("ttft_500_s", "ttft_1500_uncached_s", "ttft_1500_cached_s")


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[-1])
    for key in HIGHER:
        out[key] = max(r[key] for r in runs)
    for key in LOWER:
        out[key] = min(r[key] for r in runs)
    out["rss_peak_mib"] = max(r["rss_peak_mib"] for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--also", action="append", default=[], help="another interpreter")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args))))
        return

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    pythons = [sys.executable, *args.also]
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in pythons}
    passthrough = ["--threads", str(args.threads), "--tokens", str(args.tokens)]
    passthrough += ["--context", str(args.context)]
    for r in range(args.rounds):
        for python in pythons:
            out = subprocess.run(
                [python, __file__, "--worker", *passthrough],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout
            run = json.loads(out.strip().splitlines()[-1])
            runs[python].append(run)
            print(
                f"round {r + 1} {run['build']:>22}: single {run['single_tok_s']:.1f} tok/s, "
                f"x4 {run['aggregate_4_tok_s']:.1f}, x8 {run['aggregate_8_tok_s']:.1f}, "
                f"ttft500 {run['ttft_500_s']:.2f}s, cached {run['ttft_1500_cached_s']:.3f}s, "
                "load {:.2f}".format(run["load_start"][0]),
                flush=True,
            )
    results = [best(runs[p]) for p in pythons]
    rows = [
        ("single-stream decode, tok/s", "single_tok_s", "{:.1f}"),
        ("aggregate, 4 streams, tok/s", "aggregate_4_tok_s", "{:.1f}"),
        ("aggregate, 8 streams, tok/s", "aggregate_8_tok_s", "{:.1f}"),
        ("TTFT ~500-token prompt, s", "ttft_500_s", "{:.2f}"),
        ("prompt processing, tok/s", "prompt_tok_s", "{:.0f}"),
        ("TTFT ~1,500-token prefix, uncached, s", "ttft_1500_uncached_s", "{:.2f}"),
        ("TTFT ~1,500-token prefix, cached, s", "ttft_1500_cached_s", "{:.3f}"),
        ("RSS after start (8 sequences), MiB", "rss_after_start_mib", "{:.0f}"),
        ("RSS peak, MiB", "rss_peak_mib", "{:.0f}"),
    ]
    first = results[0]
    print(
        f"\nbest of {args.rounds} rounds; {args.threads} threads; 8 sequences of "
        f"{first['context_per_sequence']} tokens; {args.tokens} tokens per stream; "
        f"prompt {first['prompt_500_tokens']} tokens; cached prefix {first['prefix_tokens']} "
        f"tokens (reported read: {first['reported_read_uncached']} then "
        f"{first['reported_read_cached']})"
    )
    header = f"{'':40}" + "".join(f"{r['build']:>24}" for r in results)
    if len(results) > 1:
        header += f"{'ratio':>8}"
    print(header)
    for label, key, fmt in rows:
        line = f"{label:40}" + "".join(f"{fmt.format(r[key]):>24}" for r in results)
        if len(results) > 1:
            line += f"{results[0][key] / results[1][key]:>8.2f}"
        print(line)
    speedup = first["ttft_1500_uncached_s"] / first["ttft_1500_cached_s"]
    print(f"cached-prefix speed-up ({first['build']}): {speedup:.1f}x")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
