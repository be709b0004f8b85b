"""`parley batches ...` as subprocesses, talking HTTP to a real server with a key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import parley
from tests.conftest import SCRIPTED_MODEL
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e


def write_requests(path: Path, texts: dict[str, str], max_tokens: int = 300) -> Path:
    lines = [
        json.dumps(
            {
                "custom_id": custom_id,
                "params": {
                    "model": SCRIPTED_MODEL,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": text}],
                },
            }
        )
        for custom_id, text in texts.items()
    ]
    # A blank line is skipped, and so is the missing final newline.
    path.write_text("\n".join([*lines[:1], "", *lines[1:]]))
    return path


def batches(server: ParleyProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    if "ANTHROPIC_BASE_URL" not in env:
        args = (*args, "--base-url", server.base_url, "--api-key", server.api_key)
    return parley("batches", *args, env=env, timeout=120)


def ok(server: ParleyProcess, *args: str, **env: str) -> str:
    done = batches(server, *args, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_create_wait_show_list_and_results(scripted_server: ParleyProcess, tmp_path: Path) -> None:
    file = write_requests(tmp_path / "batch.jsonl", {"a": "say: one", "b": "count: 2"})
    done = batches(scripted_server, "create", str(file), "--wait", "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.splitlines()[-1]
    assert batch_id.startswith("msgbatch_")
    assert f"Created batch {batch_id} with 2 requests." in done.stderr
    assert "ended" in done.stderr  # the progress bar's last state and the summary

    shown = json.loads(ok(scripted_server, "show", batch_id, "--json"))
    assert shown["processing_status"] == "ended"
    assert shown["request_counts"]["succeeded"] == 2
    table = ok(scripted_server, "show", batch_id)
    assert batch_id in table
    assert "Succeeded" in table

    listed: list[dict[str, Any]] = json.loads(ok(scripted_server, "list", "--json"))
    assert batch_id in [b["id"] for b in listed]
    assert batch_id in ok(scripted_server, "list")

    lines = ok(scripted_server, "results", batch_id).splitlines()
    results = {line["custom_id"]: line["result"] for line in map(json.loads, lines)}
    assert results["a"]["message"]["content"][0]["text"] == "one"
    assert results["b"]["message"]["content"][0]["text"] == "1 2"
    out = tmp_path / "results.jsonl"
    assert ok(scripted_server, "results", batch_id, "-o", str(out)) == ""
    assert out.read_text().splitlines() == lines


def test_key_and_url_from_the_environment_and_cancel(
    scripted_server: ParleyProcess, tmp_path: Path
) -> None:
    # 9 s a request, two at a time: still running when `cancel` starts, however slow
    # the machine is to start the CLI.
    slow = {f"s{i}": "count: 900" for i in range(4)}
    file = write_requests(tmp_path / "slow.jsonl", slow, max_tokens=1000)
    env = {
        "ANTHROPIC_BASE_URL": scripted_server.base_url,
        "ANTHROPIC_API_KEY": scripted_server.api_key,
    }
    batch_id = ok(scripted_server, "create", str(file), **env).splitlines()[-1]
    done = batches(scripted_server, "cancel", batch_id, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == batch_id
    assert f"Batch {batch_id} is canceling." in done.stderr


def test_errors_are_reported_without_a_traceback(
    scripted_server: ParleyProcess, tmp_path: Path
) -> None:
    missing = batches(scripted_server, "show", "msgbatch_01nosuchbatch")
    assert missing.returncode == 1
    assert "404 not_found_error: Not found" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a", "params": {}}\n{not json\n')
    refused = batches(scripted_server, "create", str(bad))
    assert refused.returncode == 1
    assert f"{bad}, line 2: not JSON" in refused.stderr

    unreachable = batches(
        scripted_server, "list", ANTHROPIC_BASE_URL="http://127.0.0.1:9", ANTHROPIC_API_KEY="x"
    )
    assert unreachable.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in unreachable.stderr

    no_key = parley("batches", "list")
    assert no_key.returncode == 2
    assert "--api-key" in no_key.stderr
