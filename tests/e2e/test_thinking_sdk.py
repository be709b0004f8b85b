"""Extended thinking and context management through the newest official SDKs
(Python 2.14, TypeScript 1.14) against a real server whose scripted model thinks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).with_name("node")
CONFIG = """
[[models]]
id = "thinker"
engine = "scripted"
thinking = true
max_output_tokens = 4096
"""
PROMPT = "think: first the facts\nsay: the answer"
ENABLED: anthropic.types.ThinkingConfigParam = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    proc = ParleyProcess(tmp_path_factory.mktemp("thinking"), config=CONFIG).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def sdk(server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=server.base_url, api_key=server.api_key, max_retries=0
    ) as client:
        yield client


def history(content: Any) -> list[anthropic.types.MessageParam]:
    return [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": content},
        {"role": "user", "content": "say: again"},
    ]


def test_python_stream_round_trip(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="thinker",
        max_tokens=2048,
        thinking=ENABLED,
        messages=[{"role": "user", "content": PROMPT}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    thoughts = "".join(e.thinking for e in events if e.type == "thinking")
    signatures = [e.signature for e in events if e.type == "signature"]
    thinking, text = final.content
    assert thinking.type == "thinking"
    assert thoughts == thinking.thinking == "first the facts"
    assert signatures == [thinking.signature]
    assert text.type == "text"
    assert text.text == "the answer"
    # Message.to_param() gives back exactly what was returned; the signature holds.
    again = sdk.messages.create(
        model="thinker",
        max_tokens=2048,
        thinking=ENABLED,
        messages=history(final.to_param()["content"]),
    )
    assert again.stop_reason == "end_turn"
    forged = [{**thinking.model_dump(), "thinking": "other"}, text.model_dump()]
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(
            model="thinker", max_tokens=2048, thinking=ENABLED, messages=history(forged)
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == (
        "messages.1.content.0: Invalid `signature` in `thinking` block"
    )


def test_python_beta_context_management(sdk: anthropic.Anthropic) -> None:
    first = sdk.messages.create(
        model="thinker",
        max_tokens=2048,
        thinking=ENABLED,
        messages=[{"role": "user", "content": PROMPT}],
    )
    content = first.to_param()["content"]
    managed = sdk.beta.messages.create(
        model="thinker",
        max_tokens=100,
        betas=["context-management-2025-06-27"],
        thinking={"type": "adaptive"},
        context_management={
            "edits": [
                {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}
            ]
        },
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": content},  # type: ignore[typeddict-item]
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": content},  # type: ignore[typeddict-item]
            {"role": "user", "content": "say: done"},
        ],
    )
    assert managed.context_management is not None
    (edit,) = managed.context_management.applied_edits
    assert edit.type == "clear_thinking_20251015"
    assert edit.cleared_thinking_turns == 1


def test_typescript_thinking_and_context_management(server: ParleyProcess) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [node, "thinking.mjs", server.base_url, server.api_key, "@anthropic-ai/sdk"],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    stream = results["stream"]
    thinking, text = stream["content"]
    assert "".join(stream["thoughts"]) == thinking["thinking"] == "first the facts"
    assert stream["signatures"] == [thinking["signature"]]
    assert text["text"] == "the answer"
    assert results["sentBack"] == {"ok": True, "stop": "end_turn"}
    assert results["tampered"] == {
        "ok": False,
        "status": 400,
        "message": "messages.1.content.0: Invalid `signature` in `thinking` block",
    }
    (edit,) = results["contextManagement"]["applied_edits"]
    assert edit["cleared_thinking_turns"] == 1
