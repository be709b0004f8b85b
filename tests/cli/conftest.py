"""`parley ...` run as a subprocess, as scripts and people run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import SCRIPTED_MODEL

CONFIG = f'[[models]]\nid = "{SCRIPTED_MODEL}"\nengine = "scripted"\n'


def parley(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m parley ARGS`, without this environment's PARLEY_* and ANTHROPIC_*
    variables; `env` adds its own."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "ANTHROPIC_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = parley(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_key(store: list[str], name: str, *extra: str) -> str:
    return ok("keys", "create", "--name", name, *store, *extra).splitlines()[-1]


def key_list(store: list[str]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(ok("keys", "list", "--json", *store))
    return listed
