"""The official TypeScript SDK, newest (1.x) and 0.x, run under node against a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).with_name("node")
SCRIPT = NODE_DIR / "client.mjs"
PACKAGES = {"@anthropic-ai/sdk": "1.15.0", "anthropic-sdk-0": "0.120.0"}


def run_node(server: ParleyProcess, package: str, *args: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    if not (NODE_DIR / "node_modules" / package).is_dir():
        pytest.fail(f"{package} is not installed in {NODE_DIR} (run `make install`)")
    # ANTHROPIC_AUTH_TOKEN and friends would add credentials of their own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [node, str(SCRIPT), server.base_url, server.api_key, package, *args],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    assert results["version"] == PACKAGES[package]
    return results


def check_stream(stream: dict[str, Any], create: dict[str, Any]) -> None:
    assert stream["ok"], stream
    assert stream["texts"], stream
    assert "".join(stream["texts"]) == stream["finalText"]
    assert stream["usage"]["input_tokens"] == create["usage"]["input_tokens"] > 0
    # The helper's own view of the raw events (api-spec §6.2, §7): pings are not passed on.
    events = stream["events"]
    assert events[:2] == ["message_start", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(events[2:-3]) == {"content_block_delta"}


@pytest.mark.parametrize("package", list(PACKAGES))
def test_typescript_sdk(scripted_server: ParleyProcess, package: str) -> None:
    results = run_node(scripted_server, package, "scripted", "50", "count: 5", "--faults")

    create = results["create"]
    assert create["ok"], create
    assert create["id"].startswith("msg_")
    assert create["model"] in {"scripted", "scripted-1"}  # alias echo vs resolved id
    assert create["text"] == "1 2 3 4 5"
    assert create["stopReason"] == "end_turn"
    assert create["usage"]["input_tokens"] == 2
    assert create["usage"]["output_tokens"] == 5
    assert create["requestID"].startswith("req_")

    stream = results["stream"]
    check_stream(stream, create)
    assert stream["texts"] == ["1 ", "2 ", "3 ", "4 ", "5"]
    assert stream["finalText"] == create["text"]
    assert stream["stopReason"] == "end_turn"
    assert stream["usage"]["output_tokens"] == 5

    not_found = results["notFound"]
    assert not not_found["ok"]
    error = not_found["error"]
    assert error["class"] == "NotFoundError"
    assert error["isNotFound"] is True
    assert error["status"] == 404
    assert error["type"] == "not_found_error"
    assert error["message"] == "model: no-such-model"
    assert error["requestID"].startswith("req_")

    # TS raises a plain APIError without a status for an `event: error` (api-spec §6.4).
    mid_stream = results["errorMidStream"]
    assert not mid_stream["ok"]
    error = mid_stream["error"]
    assert error["isAPIError"] is True
    assert error["status"] is None
    assert error["type"] == "overloaded_error"
    assert error["message"] == "Overloaded"
    assert error["textsBefore"] == ["a "]


@pytest.mark.parametrize("package", list(PACKAGES))
def test_typescript_sdk_max_tokens(scripted_server: ParleyProcess, package: str) -> None:
    results = run_node(scripted_server, package, "scripted-1", "3", "count: 9")
    for name in ("create", "stream"):
        case = results[name]
        assert case["ok"], case
        assert case["stopReason"] == "max_tokens"
        assert case["usage"]["output_tokens"] == 3
    assert results["stream"]["texts"] == ["1 ", "2 ", "3 "]
    assert "errorMidStream" not in results
