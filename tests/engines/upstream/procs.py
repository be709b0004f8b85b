"""Fake upstream processes (tests/engines/upstream/fake_openai.py), for tests that kill one."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class FakeUpstreamProcess:
    log_path: Path
    name: str = "fake"
    token_delay: float = 0.0
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> FakeUpstreamProcess:
        args = [sys.executable, "-m", "tests.engines.upstream.fake_openai", "--name", self.name]
        args += ["--token-delay", str(self.token_delay)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text())
            if match:
                self.url = match.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake upstream exited early:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"fake upstream not ready in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: the process dies mid-reply, as a crashed inference server does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
