"""`parley models list`: models, their backends and their health."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.conftest import parley as run_parley
from tests.engines.upstream.conftest import Fake
from tests.engines.upstream.fake_openai import FakeState, serving

SECRET = "sk-upstream-never-shown"


def config_text(live_url: str) -> str:
    return f"""
[[models]]
id = "up-1"
aliases = ["up"]
context_window = 4096
max_output_tokens = 512
images = true

[models.routing]
eject_after = 2

[[models.backends]]
engine = "openai"
name = "live"
base_url = "{live_url}"
model = "fake-model"
api_key = "{SECRET}"

[[models.backends]]
engine = "openai"
name = "dead"
base_url = "http://127.0.0.1:9/v1"
model = "fake-model"

[[models]]
id = "scripted-1"
engine = "scripted"
"""


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = FakeState(name="fake-a")
    async with serving(state) as url:
        yield Fake(state, url)


async def parley(*args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the fake upstream this command talks to is served by this event loop.
    return await asyncio.to_thread(run_parley, *args, env={"COLUMNS": "200"})


async def test_models_list_json(fake: Fake, tmp_path: Path) -> None:
    config = tmp_path / "parley.toml"
    config.write_text(config_text(fake.url))
    result = await parley("models", "list", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    up, scripted = json.loads(result.stdout)
    assert up["id"] == "up-1"
    assert up["aliases"] == ["up"]
    assert (up["context_window"], up["max_output_tokens"]) == (4096, 512)
    assert (up["images"], up["tools"]) == (True, True)  # images declared, tools by default
    live, dead = up["backends"]
    assert live == {
        "name": "live",
        "kind": "openai",
        "target": fake.url,
        "upstream_model": "fake-model",
        "health": "healthy",
        "problem": None,
    }
    assert dead["health"] == "unhealthy"
    assert dead["problem"].startswith("overloaded_error")
    assert scripted["backends"][0]["kind"] == "scripted"
    assert scripted["backends"][0]["health"] == "healthy"


async def test_models_list_table(fake: Fake, tmp_path: Path) -> None:
    config = tmp_path / "parley.toml"
    config.write_text(config_text(fake.url))
    result = await parley("models", "list", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    live = next(line for line in lines if " live " in line)
    assert "up-1" in live
    assert "healthy" in live
    assert "unhealthy" not in live
    dead = next(line for line in lines if " dead " in line)
    assert "unhealthy" in dead
    assert SECRET not in result.stdout


async def test_models_list_without_checks_contacts_nobody(tmp_path: Path) -> None:
    config = tmp_path / "parley.toml"
    config.write_text(config_text("http://127.0.0.1:9/v1"))
    result = await parley("models", "list", "--json", "--no-check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    up = json.loads(result.stdout)[0]
    assert {b["health"] for b in up["backends"]} == {"unchecked"}
