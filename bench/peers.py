"""Shared pieces of the side-by-side benchmarks (bench/engine.py, bench/gateway.py).

The peer servers as processes (llama.cpp's llama-server, LiteLLM's proxy), built or
installed by the Makefile into .peers/; the load average and memory of a process tree;
and the round-robin order every cell runs in, so load drifts on a shared machine hit
every server alike.
"""

from __future__ import annotations

import math
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".peers"
LLAMA_SERVER = PEERS / "llama-server" / "bin" / "llama-server"
LITELLM = PEERS / "litellm" / "bin" / "litellm"

T = TypeVar("T")


# -- the machine ------------------------------------------------------------------------------


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree(pid: int) -> list[int]:
    """pid and all its descendants that are still alive."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return pids


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children now, MiB."""
    return sum(_status_kib(p, "VmRSS") for p in _tree(pid)) / 1024


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, plus that of its live children, MiB."""
    return sum(_status_kib(p, "VmHWM") for p in _tree(pid)) / 1024


# -- rounds and figures -------------------------------------------------------------------------


def rotations(items: Sequence[T], rounds: int) -> list[list[T]]:
    """The order of each round: every item once, the first one rotating, so no server
    always runs first (on a warm cache) or last (after the others heated the cores)."""
    n = len(items)
    return [[items[(r + i) % n] for i in range(n)] for r in range(rounds)]


def best(values: Sequence[float], higher_is_better: bool) -> float:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan
    return max(finite) if higher_is_better else min(finite)


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def speed_ratio(ours: float, theirs: float, higher_is_better: bool) -> float:
    """How many times faster `ours` is (> 1: ours is better), for rates and for times."""
    if math.isnan(ours) or math.isnan(theirs) or ours <= 0 or theirs <= 0:
        return math.nan
    return ours / theirs if higher_is_better else theirs / ours


def fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


# -- peer processes -----------------------------------------------------------------------------


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready in {timeout}s:\n{log_path.read_text()[-4000:]}")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class LlamaServerProcess:
    """llama.cpp's llama-server on a free loopback port; it serves `POST /v1/messages`."""

    binary: Path
    model: Path
    log_path: Path
    args: list[str]
    alias: str = "smollm2"
    api_key: str = field(default_factory=lambda: "sk-llama-" + secrets.token_hex(8))
    base_url: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def command(self, port: int) -> list[str]:
        return [
            str(self.binary.absolute()),
            *("-m", str(self.model), "--host", "127.0.0.1", "--port", str(port)),
            *("--api-key", self.api_key, "-a", self.alias),
            *self.args,
        ]

    def start(self, timeout: float = 180.0) -> LlamaServerProcess:
        if not self.binary.exists():
            raise SystemExit(f"{self.binary} is missing: run `make peer-llama-server` first")
        port = free_port()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.command(port), stdout=out, stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{port}"
        # /health answers 503 while the model loads, 200 once it serves; no key needed.
        wait_ready(self.proc, f"{self.base_url}/health", self.log_path, timeout, "llama-server")
        return self

    def stop(self) -> None:
        stop_process(self.proc)


LITELLM_CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: hosted_vllm/{upstream_model}
      api_base: {api_base}
      api_key: none
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master_key}
"""


@dataclass
class LiteLLMProcess:
    """LiteLLM's proxy, one worker, no database, in front of an OpenAI-compatible
    upstream: `hosted_vllm/<model>` (with `openai/<model>` it would call the upstream's
    Responses API, which a chat-completions-only server answers with 404)."""

    binary: Path
    work_dir: Path
    model: str
    api_base: str
    upstream_model: str = "fake"
    workers: int = 1
    master_key: str = field(default_factory=lambda: "sk-litellm-" + secrets.token_hex(8))
    base_url: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.work_dir / "litellm.log"

    def start(self, timeout: float = 300.0) -> LiteLLMProcess:
        if not self.binary.exists():
            raise SystemExit(f"{self.binary} is missing: run `make peer-litellm` first")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "litellm.yaml"
        config.write_text(
            LITELLM_CONFIG.format(
                model=self.model,
                upstream_model=self.upstream_model,
                api_base=self.api_base,
                master_key=self.master_key,
            )
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "DATABASE"))}
        env |= {
            "LITELLM_MASTER_KEY": self.master_key,
            # The cost map is fetched from GitHub at start otherwise (no network here).
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "NO_DOCS": "True",
        }
        args = [str(self.binary.absolute()), "--config", str(config), "--host", "127.0.0.1"]
        args += ["--port", str(port), "--num_workers", str(self.workers)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.work_dir
            )
        self.base_url = f"http://127.0.0.1:{port}"
        wait_ready(
            self.proc, f"{self.base_url}/health/liveliness", self.log_path, timeout, "litellm"
        )
        return self

    def stop(self) -> None:
        stop_process(self.proc)
