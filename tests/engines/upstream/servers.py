"""Real OpenAI-compatible servers on the bundled SmolLM2 GGUF, for the compatibility
rows: llama.cpp's `llama-server` and llama-cpp-python's `python -m llama_cpp.server`.

llama-server is built from the llama.cpp that llama-cpp-python vendors (the
Makefile's peer target, into `.peers/llama-server/`); `PARLEY_LLAMA_SERVER` names
another binary. A missing binary fails the tests that need it: they are part of
the suite, not optional.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from parley.engines.llamacpp import bundled_model_path

ROOT = Path(__file__).resolve().parents[3]
LLAMA_SERVER_DEFAULT = ROOT / ".peers" / "llama-server" / "bin" / "llama-server"
# The servers' own context: small, so that a long prompt overflows it for real.
SERVER_CONTEXT = 2048
# One thread: on two shared cores more threads are much slower (engine-notes.md).
_QUIET = {"OMP_WAIT_POLICY": "PASSIVE"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def llama_server_binary() -> Path:
    path = Path(os.environ.get("PARLEY_LLAMA_SERVER") or LLAMA_SERVER_DEFAULT)
    if not path.is_file():
        pytest.fail(
            f"llama-server not found at {path}: build it with `make peer-llama-server` "
            "(or set PARLEY_LLAMA_SERVER to a llama-server binary)",
            pytrace=False,
        )
    return path


@contextmanager
def _serving(args: list[str], log: Path, url: str, timeout: float = 120) -> Iterator[str]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **_QUIET}
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} not ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def llama_server(log: Path) -> Iterator[str]:
    """llama.cpp's server with Jinja templates on (its tools need them), one slot."""
    port = free_port()
    args = [str(llama_server_binary()), "-m", str(bundled_model_path()), "--jinja"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--alias", "smollm2"]
    args += ["-c", str(SERVER_CONTEXT), "-np", "1", "-t", "1", "-tb", "1"]
    with _serving(args, log, f"http://127.0.0.1:{port}/v1") as url:
        yield url


@contextmanager
def llama_cpp_python_server(log: Path) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path())]
    args += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2"]
    args += ["--n_ctx", str(SERVER_CONTEXT), "--n_threads", "1", "--n_threads_batch", "1"]
    with _serving(args, log, f"http://127.0.0.1:{port}/v1") as url:
        yield url


def bundled_chat_template(path: Path) -> Path:
    """The bundled GGUF's own chat template, written to a Jinja file (what an operator
    of llama-cpp-python's server configures as the backend's `chat_template`)."""
    from llama_cpp import Llama

    model = Llama(str(bundled_model_path()), vocab_only=True, verbose=False)
    path.write_text(model.metadata["tokenizer.chat_template"], encoding="utf-8")
    return path
