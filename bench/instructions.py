"""The gateway path in CPU instructions: what one request costs `parley serve`, counted
by valgrind's callgrind, so that two versions can be compared on a shared, noisy
machine (the count is the same from run to run, whatever else the machine does;
timings there move by a millisecond).

For each version (the working tree, and `--against REV` checked out into a temporary
git worktree), starts the fake OpenAI upstream (tests/engines/upstream/fake_openai.py)
and a `parley serve` in front of it under callgrind with instrumentation off, sends
100 requests to warm it, then counts the instructions of the next N requests, plain
and streamed, one at a time. The batch worker's poll is moved out of the way, so
background work does not land in the count. Prints instructions per request and the
ratio. User-space instructions only: system calls and waiting are not in it, which
bench/gateway.py measures. Needs valgrind (Debian's package). Run from the
repository root:

    .venv/bin/python bench/instructions.py [--against REV] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.gateway import CONFIG, MODEL, load, senders  # noqa: E402
from bench.peers import load_avg, machine  # noqa: E402
from tests.engines.upstream.procs import FakeUpstreamProcess  # noqa: E402

_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, check=True)


def count(src: Path, upstream: str, stream: bool, requests: int, tmp: Path) -> int:
    """Instructions per request of a `parley serve` running `src`."""
    config = tmp / "parley.toml"
    config.write_text("batch_poll_interval = 1000.0\n" + CONFIG.format(model=MODEL, url=upstream))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PYTHONPATH=str(src), PYTHONHASHSEED="0")
    out, err = tmp / "serve.out", tmp / "serve.err"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={tmp / 'cg.out'}",
        sys.executable,
        "-m",
        "parley",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp / "data"),
        "--config",
        str(config),
    ]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
    try:
        deadline = time.monotonic() + 600
        while not (ready := re.search(r"Parley ready on (\S+)", err.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"parley serve did not start:\n{err.read_text()[-2000:]}")
            time.sleep(1)
        key = re.search(r"ANTHROPIC_API_KEY=(\S+)", out.read_text())
        assert key is not None
        send = senders({"parley": (ready.group(1), key.group(1))}, stream)["parley"]

        async def measure() -> None:
            await load(send, 1, 100)
            control("-i", "on", str(proc.pid))
            await load(send, 1, requests)
            control("-d", str(proc.pid))
            control("-i", "off", str(proc.pid))

        asyncio.run(measure())
        dumps = [p for p in tmp.glob("cg.out.*") if p.is_file()]
        totals = [int(m.group(1)) for p in dumps if (m := _TOTAL.search(p.read_text()))]
        return max(totals) // requests
    finally:
        proc.terminate()
        proc.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="a git revision to compare the working tree with")
    parser.add_argument("--requests", type=int, default=200, help="counted per cell (200)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"machine: {machine()}; load average at start: {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="parley-instructions-") as name:
        tmp = Path(name)
        versions = {"working tree": ROOT / "src"}
        if args.against:
            tree = tmp / "against"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.against],
                capture_output=True,
                check=True,
            )
            versions[args.against] = tree / "src"
        fake = FakeUpstreamProcess(tmp / "fake.log", name="fake").start()
        try:
            results: dict[tuple[str, str], int] = {}
            for mode in ("plain", "stream"):
                for label, src in versions.items():
                    cell = tmp / f"{mode}-{len(results)}"
                    cell.mkdir()
                    results[label, mode] = count(
                        src, fake.url, mode == "stream", args.requests, cell
                    )
                    print(
                        f"  {label:>14} {mode:6}: {results[label, mode]:>12,} instructions/request"
                    )
        finally:
            fake.stop()
            if args.against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "against")],
                    capture_output=True,
                    check=False,
                )
    if args.against:
        for mode in ("plain", "stream"):
            ratio = results["working tree", mode] / results[args.against, mode]
            print(f"{mode}: working tree / {args.against} = {ratio:.3f}")
    print(f"load average at end: {load_avg()}")


if __name__ == "__main__":
    main()
