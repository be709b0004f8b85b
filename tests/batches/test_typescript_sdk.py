"""Message Batches through the official TypeScript SDK, newest and 0.x: create,
retrieve until ended, results() (api-spec §11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.conftest import SCRIPTED_MODEL
from tests.e2e.test_typescript_sdk import NODE_DIR, PACKAGES
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

SCRIPT = NODE_DIR / "batches.mjs"


def run_batches_script(server: ParleyProcess, package: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [node, str(SCRIPT), server.base_url, server.api_key, package, SCRIPTED_MODEL],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    output: dict[str, Any] = json.loads(done.stdout)
    assert output["version"] == PACKAGES[package]
    return output


@pytest.mark.parametrize("package", list(PACKAGES))
def test_typescript_sdk_batches(scripted_server: ParleyProcess, package: str) -> None:
    output = run_batches_script(scripted_server, package)
    created = output["created"]
    assert created["id"].startswith("msgbatch_")
    assert created["processing_status"] == "in_progress"
    assert created["request_counts"]["processing"] == 3

    ended = output["ended"]
    assert ended["id"] == created["id"]
    assert ended["request_counts"] == {
        "processing": 0,
        "succeeded": 2,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    assert ended["results_url"] == (
        f"{scripted_server.base_url}/v1/messages/batches/{created['id']}/results"
    )

    results = {line["custom_id"]: line["result"] for line in output["results"]}
    assert set(results) == {"first", "second", "broken"}
    first = results["first"]
    assert first["type"] == "succeeded"
    assert first["message"]["content"] == [{"type": "text", "text": "hello batch"}]
    assert first["message"]["usage"]["service_tier"] == "batch"
    assert results["second"]["message"]["content"][0]["text"] == "1 2 3"
    assert results["broken"]["type"] == "errored"
    assert results["broken"]["error"]["type"] == "error"
    assert results["broken"]["error"]["error"]["type"] == "invalid_request_error"

    assert output["notFound"] == {"isNotFound": True, "status": 404}
