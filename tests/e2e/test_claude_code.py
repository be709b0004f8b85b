"""Claude Code, the most demanding client of the API, run against Parley.

It sends beta fields (`context_management`, adaptive `thinking`,
`output_config`), a mid-conversation system message, ~70 KB of tool
definitions, `?beta=true` on the path and a `HEAD /` probe; the scripted
engine makes its answer deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

CLAUDE = Path(__file__).parent / "claude_code" / "node_modules" / ".bin" / "claude"


def claude(
    server: ParleyProcess, home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_API_KEY": server.api_key,
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        **env,
    }
    return subprocess.run(
        [str(CLAUDE), "-p", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    if not CLAUDE.exists() or shutil.which("node") is None:
        pytest.fail("Claude Code is not installed: run `make install`")
    config = '[[models]]\nid = "smollm2"\nengine = "scripted"\nmax_output_tokens = 4096\n'
    proc = ParleyProcess(tmp_path_factory.mktemp("claude-code"), config=config).start()
    yield proc
    proc.stop()


def test_claude_code_prints_the_reply(server: ParleyProcess, tmp_path: Path) -> None:
    result = claude(
        server,
        tmp_path / "home",
        "say: hello from parley",
        "--model",
        "smollm2",
        CLAUDE_CODE_MAX_OUTPUT_TOKENS="1000",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "hello from parley"
    # Claude Code calls the beta path (`?beta=true`); access logs leave query strings out.
    assert 'POST /v1/messages HTTP/1.1" 200' in server.logs()
    assert "beta=true" not in server.logs()


def test_claude_code_json_result_reports_usage(server: ParleyProcess, tmp_path: Path) -> None:
    result = claude(
        server,
        tmp_path / "home",
        "say: forty two",
        "--model",
        "smollm2",
        "--output-format",
        "json",
        CLAUDE_CODE_MAX_OUTPUT_TOKENS="1000",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["is_error"] is False
    assert report["result"] == "forty two"
    assert report["stop_reason"] == "end_turn"
    assert report["usage"]["input_tokens"] > 100  # its long system prompt was counted
    assert report["usage"]["output_tokens"] == 2


def test_claude_code_default_output_budget_adapts_to_the_api_error(
    server: ParleyProcess, tmp_path: Path
) -> None:
    # Claude Code asks unknown models for 32000 output tokens (with or without
    # CLAUDE_CODE_MAX_OUTPUT_TOKENS). Like the real API, Parley refuses a max_tokens
    # above the model's cap, in the API's words ("max_tokens: 32000 > 4096, ..."),
    # which Claude Code 2.1.3xx reads: it asks again within the cap, and answers.
    before = server.logs().count('POST /v1/messages HTTP/1.1" 400')
    result = claude(server, tmp_path / "home", "say: hi", "--model", "smollm2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "hi"
    assert server.logs().count('POST /v1/messages HTTP/1.1" 400') > before
