"""What a message thread costs and saves: one conversation of `--turns` turns sent as a
thread (`create`, then `continue`s with only the new message) and the same
conversation sent whole on every turn, against a `parley serve` on the scripted
engine (no model time, so what is left is Parley's own work: the store, the
history, validation, tokenizing the prompt).

For each way it prints, at a few depths of the conversation, the median latency of a
turn and the bytes of its request body, and the request bytes of the whole
conversation. Run from the repository root:

    .venv/bin/python bench/threads.py [--turns 60] [--repeats 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.serverproc

import httpx  # noqa: E402

from tests.serverproc import ParleyProcess  # noqa: E402

MODEL = "bench-scripted"
CONFIG = f"""
[tiers.default]
requests_per_minute = 100000000
input_tokens_per_minute = 1000000000
output_tokens_per_minute = 1000000000

[[models]]
id = "{MODEL}"
engine = "scripted"
context_window = 1000000
max_output_tokens = 256
slots = 1
"""
# A user turn of about 60 words, echoed back: the history grows by ~120 words a turn.
SENTENCE = "The quick brown fox jumps over the lazy dog while the cat watches. "


def turn_text(i: int) -> str:
    return f"Turn {i}. " + SENTENCE * 5


def run(http: httpx.Client, turns: int, threaded: bool) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    sizes: list[int] = []
    history: list[dict[str, Any]] = []
    previous: str | None = None
    for i in range(turns):
        message = {"role": "user", "content": turn_text(i)}
        body: dict[str, Any] = {"model": MODEL, "max_tokens": 200, "system": "Be brief."}
        if threaded:
            body["messages"] = [message]
            body["thread"] = (
                {"type": "create"}
                if previous is None
                else {"type": "continue", "previous_message_id": previous}
            )
            if previous is not None:
                del body["system"]
        else:
            body["messages"] = [*history, message]
        raw = json.dumps(body).encode()
        start = time.perf_counter()
        response = http.post("/v1/messages", content=raw)
        latencies.append(time.perf_counter() - start)
        sizes.append(len(raw))
        response.raise_for_status()
        reply = response.json()
        previous = reply["id"]
        history += [message, {"role": "assistant", "content": reply["content"]}]
    return latencies, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="e.g. postgresql://...")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    env = {"PARLEY_DATABASE_URL": args.database_url} if args.database_url else {}
    with tempfile.TemporaryDirectory() as tmp:
        server = ParleyProcess(Path(tmp), config=CONFIG, env=env).start()
        try:
            headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
                results: dict[bool, list[tuple[list[float], list[int]]]] = {True: [], False: []}
                for _ in range(args.repeats):
                    for threaded in (False, True):
                        results[threaded].append(run(http, args.turns, threaded))
        finally:
            server.stop()
    depths = sorted({1, 2, 10, args.turns // 2, args.turns} & set(range(1, args.turns + 1)))
    print(f"database: {args.database_url or 'SQLite'}; {args.turns} turns x {args.repeats}")
    print(f"{'turn':>5} {'whole ms':>9} {'thread ms':>10} {'whole bytes':>12} {'thread bytes':>13}")
    for depth in depths:
        cells = []
        for threaded in (False, True):
            ms = statistics.median(r[0][depth - 1] for r in results[threaded]) * 1000
            cells.append(ms)
        whole_bytes = results[False][0][1][depth - 1]
        thread_bytes = results[True][0][1][depth - 1]
        print(f"{depth:>5} {cells[0]:>9.1f} {cells[1]:>10.1f} {whole_bytes:>12} {thread_bytes:>13}")
    for threaded, name in ((False, "whole"), (True, "thread")):
        total = statistics.median(sum(r[0]) for r in results[threaded])
        sent = sum(results[threaded][0][1])
        print(f"{name:>6}: conversation {total:.2f} s, {sent / 1e6:.2f} MB sent")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
