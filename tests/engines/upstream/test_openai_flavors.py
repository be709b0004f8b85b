"""Telling OpenAI-compatible servers apart, and what Parley learns from them at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import OpenAIBackendConfig
from parley.engines.openai_compat import OpenAICompatEngine
from parley.engines.openai_flavors import FLAVORS, detect, load_template, with_props


def server(answers: dict[str, Any], seen: list[str] | None = None) -> httpx.MockTransport:
    """A server answering JSON at the given paths, 404 elsewhere."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(str(request.url))
        if request.url.path in answers:
            return httpx.Response(200, json=answers[request.url.path])
        return httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


def models(owner: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {"id": "m", "object": "model"}
    if owner is not None:
        card["owned_by"] = owner
    return {"object": "list", "data": [card]}


@pytest.mark.parametrize(
    ("answers", "flavor"),
    [
        ({"/v1/models": models("vllm")}, "vllm"),
        ({"/v1/models": models("sglang")}, "sglang"),
        ({"/v1/models": models("llamacpp")}, "llama-server"),
        ({"/v1/models": models("library"), "/api/version": {"version": "0.12.6"}}, "ollama"),
        (
            {
                "/v1/models": models("me"),
                "/openapi.json": {"info": {"title": "🦙 llama.cpp Python API"}},
            },
            "llama-cpp-python",
        ),
        ({"/v1/models": models(None)}, "generic"),
    ],
)
async def test_detect(answers: dict[str, Any], flavor: str) -> None:
    async with httpx.AsyncClient(base_url="http://up/v1/", transport=server(answers)) as client:
        assert await detect(client) == flavor


async def test_detect_asks_the_servers_root_under_a_path_prefix() -> None:
    seen: list[str] = []
    answers = {"/llama/v1/models": models("library"), "/llama/api/version": {"version": "1"}}
    async with httpx.AsyncClient(
        base_url="http://up/llama/v1/", transport=server(answers, seen)
    ) as client:
        assert await detect(client) == "ollama"
    assert "http://up/llama/api/version" in seen


async def test_no_answer_is_no_flavor_yet() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(
        base_url="http://up/v1/", transport=httpx.MockTransport(refuse)
    ) as client:
        assert await detect(client) is None


def test_llama_server_props_decide_the_tool_format_and_template() -> None:
    props = {
        "chat_template": "{{ messages }}",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "chat_template_caps": {"supports_tool_calls": False},
    }
    upstream = with_props(FLAVORS["llama-server"], props)
    assert upstream.flavor.tool_format == "text"
    assert upstream.template is not None
    assert (upstream.template.source, upstream.template.eos_token) == ("{{ messages }}", "</s>")
    capable = with_props(
        FLAVORS["llama-server"], {"chat_template_caps": {"supports_tool_calls": True}}
    )
    assert capable.flavor.tool_format == "native"
    assert capable.template is None


def test_templates_from_jinja_files_and_tokenizer_configs(tmp_path: Path) -> None:
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
    assert load_template(jinja).source.startswith("{{ bos_token }}")
    config = tmp_path / "tokenizer_config.json"
    config.write_text(
        json.dumps(
            {
                "chat_template": [
                    {"name": "tool_use", "template": "tools"},
                    {"name": "default", "template": "plain"},
                ],
                "eos_token": {"content": "<|eot_id|>"},
            }
        )
    )
    template = load_template(config)
    assert (template.source, template.eos_token) == ("plain", "<|eot_id|>")


async def test_the_engine_learns_its_flavor_at_start_and_a_configured_one_wins() -> None:
    transport = server({"/v1/models": models("vllm")})
    auto = OpenAIBackendConfig(engine="openai", base_url="http://up/v1", model="m")
    engine = OpenAICompatEngine(auto, transport=transport)
    assert not engine.upstream.detected
    await engine.start()
    assert (engine.upstream.flavor.name, engine.upstream.detected) == ("vllm", True)
    await engine.aclose()

    fixed = auto.model_copy(update={"flavor": "ollama"})
    engine = OpenAICompatEngine(fixed, transport=transport)
    assert (engine.upstream.flavor.name, engine.upstream.detected) == ("ollama", True)
    await engine.aclose()


def test_a_missing_template_is_a_clear_start_up_error(tmp_path: Path) -> None:
    config = OpenAIBackendConfig(
        engine="openai", base_url="http://up/v1", model="m", chat_template=tmp_path / "nope.jinja"
    )
    with pytest.raises(ValueError, match=r"backend http://up/v1: chat_template: .*nope\.jinja"):
        OpenAICompatEngine(config)
