"""The 0.x Python SDK (anthropic 0.121.0: anthropic-version 2023-06-01, X-Api-Key),
run as a subprocess because the venv holds the newest SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CATALOG_ORDER
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SDK0_PATH = ROOT / ".sdk" / "anthropic0"
SCRIPT = Path(__file__).with_name("sdk0_client.py")
SDK0_VERSION = "0.121.0"


def run_sdk0(server: ParleyProcess, model: str, *extra: str) -> dict[str, Any]:
    if not (SDK0_PATH / "anthropic").is_dir():
        pytest.fail(f"the 0.x SDK is not installed in {SDK0_PATH} (run `make install`)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHONPATH"] = str(SDK0_PATH)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), server.base_url, server.api_key, model, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    assert results["sdk_version"] == SDK0_VERSION
    return results


@pytest.fixture(scope="module")
def results(catalog_server: ParleyProcess) -> dict[str, Any]:
    return run_sdk0(catalog_server, "cat-a")


def ok(results: dict[str, Any], name: str) -> dict[str, Any]:
    case: dict[str, Any] = results[name]
    assert case["ok"], case
    return case


def failed(results: dict[str, Any], name: str) -> dict[str, Any]:
    case: dict[str, Any] = results[name]
    assert not case["ok"], case
    error: dict[str, Any] = case["error"]
    return error


def test_create_accepts_temperature_under_2023_06_01(results: dict[str, Any]) -> None:
    create = ok(results, "create")
    assert create["text"] == "old client"
    assert create["model"] in {"cat-a", "cat-alpha"}  # alias echo vs resolved id: not pinned
    assert create["id"].startswith("msg_")
    assert create["stop_reason"] == "end_turn"
    assert create["usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert create["request_id"].startswith("req_")


def test_stream_text_matches_final_message(results: dict[str, Any]) -> None:
    stream = ok(results, "stream")
    assert stream["texts"] == ["1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7"]
    assert "".join(stream["texts"]) == stream["final_text"] == "1 2 3 4 5 6 7"
    assert stream["stop_reason"] == "end_turn"
    assert stream["usage"]["output_tokens"] == 7
    assert stream["usage"]["input_tokens"] == ok(results, "count_tokens")["input_tokens"] == 2


def test_raw_stream_event_order(results: dict[str, Any]) -> None:
    assert ok(results, "raw_stream")["types"] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_models_list_auto_paginates(results: dict[str, Any]) -> None:
    listing = ok(results, "models_list")
    assert listing["first_page"] == CATALOG_ORDER[:1]
    assert listing["has_more"] is True
    assert listing["all"] == CATALOG_ORDER
    assert listing["pages"] == len(CATALOG_ORDER)
    assert ok(results, "models_retrieve")["id"] == "cat-alpha"


def test_not_found_error(results: dict[str, Any]) -> None:
    error = failed(results, "not_found")
    assert error["class"] == "NotFoundError"
    assert error["status"] == 404
    assert error["body"]["error"] == {"type": "not_found_error", "message": "model: no-such-model"}
    assert error["request_id"].startswith("req_")
    assert error["body"]["request_id"] == error["request_id"]


def test_authentication_error(results: dict[str, Any]) -> None:
    error = failed(results, "authentication")
    assert error["class"] == "AuthenticationError"
    assert error["status"] == 401
    assert error["body"]["error"] == {
        "type": "authentication_error",
        "message": "invalid x-api-key",
    }


def test_temperature_is_range_checked(results: dict[str, Any]) -> None:
    error = failed(results, "temperature_too_high")
    assert error["class"] == "BadRequestError"
    assert error["status"] == 400
    assert error["body"]["error"]["message"] == (
        "temperature: Input should be less than or equal to 1"
    )


def test_error_event_mid_stream(results: dict[str, Any]) -> None:
    error = failed(results, "error_mid_stream")
    # Python builds the error from the event body with the stream's status (api-spec §6.4).
    assert error["class"] == "APIStatusError"
    assert error["status"] == 200
    assert error["body"] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_against_the_default_scripted_server(scripted_server: ParleyProcess) -> None:
    """The same client against the shared scripted server, addressed by its model id."""
    results = run_sdk0(
        scripted_server, "scripted-1", "--only", "create", "stream", "models_retrieve"
    )
    assert set(results) == {"sdk_version", "create", "stream", "models_retrieve"}
    assert ok(results, "create")["model"] == "scripted-1"  # asked for by id
    assert ok(results, "stream")["final_text"] == "1 2 3 4 5 6 7"
    assert ok(results, "models_retrieve")["id"] == "scripted-1"
