"""`parley serve`: the bootstrap key, the "ready" line, config errors, models by path."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from tests.cli.conftest import CONFIG, parley
from tests.serverproc import ParleyProcess


@pytest.mark.e2e
def test_serve_prints_a_bootstrap_key_once_and_a_created_key_works(tmp_path: Path) -> None:
    first = ParleyProcess(tmp_path / "d1", config=CONFIG).start()
    try:
        assert first.api_key.startswith("sk-parley-")
        assert f"export ANTHROPIC_BASE_URL={first.base_url}" in first.logs()
        assert first.logs().count("Parley ready on") == 1
        created = parley("keys", "create", "--name", "second", "--data-dir", str(first.data_dir))
        second_key = created.stdout.splitlines()[-1]
        for key in (first.api_key, second_key):
            with anthropic.Anthropic(base_url=first.base_url, api_key=key, max_retries=0) as client:
                reply = client.messages.create(
                    model="scripted-1",
                    max_tokens=10,
                    messages=[{"role": "user", "content": "say: ok"}],
                )
            assert reply.content[0].type == "text"
            assert reply.content[0].text == "ok"
    finally:
        first.stop()
    # A second start finds keys and prints none; no secret ever reaches the log.
    again = ParleyProcess(first.data_dir, config=CONFIG).start()
    try:
        assert again.api_key == ""
        assert second_key not in again.logs()
    finally:
        again.stop()


def test_bad_config_file_is_reported_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[models]]\nid = "x"\nengine = "nope"\n')
    result = parley("serve", "--config", str(config), "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "invalid configuration" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.model
def test_extra_gguf_models_by_path_in_the_config(tmp_path: Path) -> None:
    from parley.engines.llamacpp import bundled_model_path

    config = f"""
[[models]]
id = "smollm2-135m-instruct"
aliases = ["smollm2"]
slots = 1

[[models]]
id = "second-gguf"
path = "{bundled_model_path()}"
display_name = "Second GGUF"
created_at = "2025-01-01T00:00:00Z"
context_window = 1024
max_output_tokens = 256
slots = 1
"""
    server = ParleyProcess(tmp_path / "data", config=config).start()
    client = anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key)
    try:
        ids = [m.id for m in client.models.list()]
        assert ids == ["second-gguf", "smollm2-135m-instruct"]  # newest first
        info = client.models.retrieve("second-gguf")
        assert info.max_input_tokens == 1024
        assert info.max_tokens == 256
        reply = client.messages.create(
            model="second-gguf", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )
        assert reply.model == "second-gguf"
        assert reply.usage.output_tokens <= 5
    finally:
        client.close()
        server.stop()
