"""Start a real `parley serve` process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_READY = re.compile(r"Parley ready on (http://\S+)")
_KEY = re.compile(r"ANTHROPIC_API_KEY=(\S+)")


@dataclass
class ParleyProcess:
    data_dir: Path
    config: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # more `parley serve` options
    base_url: str = ""
    api_key: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def stdout_path(self) -> Path:
        return self.data_dir / "serve.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.data_dir / "serve.stderr"

    def logs(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def start(self, timeout: float = 120.0) -> ParleyProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "parley", "serve", "--port", "0"]
        args += ["--data-dir", str(self.data_dir), *self.args]
        if self.config is not None:
            config_path = self.data_dir / "parley.toml"
            config_path.write_text(self.config)
            args += ["--config", str(config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env.update(self.env)
        # Output goes to files, not pipes: a full pipe would block the server.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _READY.search(self.stderr_path.read_text())
            if match:
                self.base_url = match.group(1)
                key = _KEY.search(self.stdout_path.read_text())
                self.api_key = key.group(1) if key else ""
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"parley serve exited early:\n{self.logs()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"parley serve was not ready in {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def create_key(
    server: ParleyProcess, name: str, *, admin: bool = False, want_id: bool = False
) -> str:
    """A key made with `parley keys create` in the server's store: its secret, or its id."""
    args = [sys.executable, "-m", "parley", "keys", "create", "--name", name]
    args += ["--data-dir", str(server.data_dir)]
    if server.config is not None:
        args += ["--config", str(server.data_dir / "parley.toml")]
    if admin:
        args.append("--admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(server.env)
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    if want_id:
        found = re.search(r"apikey_\w+", done.stderr + done.stdout)
        assert found, done.stderr
        return found.group(0)
    return done.stdout.strip().splitlines()[-1]
