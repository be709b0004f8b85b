"""What each OpenAI-compatible server does its own way: a small table of facts per
server ("flavor"), and telling which server a backend is, once, at start.

Every quirk Parley works around is a fact here, read by the request and reply code
(`openai_wire`, `openai_tools`, `openai_raw`); nothing there asks which server it is
talking to. docs/upstreams.md shows the same table (a test keeps them in step).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import httpx

from parley.config import FlavorName

log = logging.getLogger(__name__)

# How the turns with tool calls and results go upstream. "native": the assistant's
# `tool_calls` and `tool` messages, and the server reads calls out of the model's
# output. "text": written into the turns' text in the Hermes style (engines/hermes.py),
# the tools described in the system prompt, and Parley reads the calls out of the text
# (for servers that neither render nor parse calls for the model's template).
ToolFormat = Literal["native", "text"]
# How `tool_choice` any/tool is guaranteed. "tool_choice": the server enforces
# `required` and a named function itself (with guided decoding). "json_schema": the
# reply is constrained by structured output (`response_format` json_schema) to one
# `{"name", "arguments"}` object, which Parley turns into the call. "json_object_schema":
# the same through llama-cpp-python's `response_format: {type: json_object, schema}`.
ToolForcing = Literal["tool_choice", "json_schema", "json_object_schema"]
# How a final assistant turn (prefill) is continued. "continue_final_message": vLLM's
# and SGLang's flag. "implicit": the server continues a final assistant message by
# itself. "raw": the raw completions endpoint, with the model's chat template rendered
# by Parley (engines/chat_template.py).
PrefillWay = Literal["continue_final_message", "implicit", "raw"]


@dataclass(frozen=True)
class Flavor:
    name: FlavorName
    tool_format: ToolFormat
    # `content` of an assistant turn that only calls tools (OpenAI's shape is null).
    empty_call_content: str | None
    # `tool_choice` is read ("auto", "none"; the forcing values as `force_tool` says).
    tool_choice: bool
    force_tool: ToolForcing
    prefill: PrefillWay
    # The continued reply starts by repeating the prefill (llama-server's does).
    prefill_echo: bool
    # vLLM wants `add_generation_prompt: false` beside `continue_final_message`.
    add_generation_prompt: bool
    # `stream_options.include_usage` gives a usage chunk at the end of a stream.
    stream_usage: bool
    # `usage.prompt_tokens_details.cached_tokens` is reported (with vLLM's
    # `--enable-prompt-tokens-details`, SGLang's `--enable-cache-report`).
    cached_tokens: bool
    # `top_k` is a sampling field the server honours.
    top_k: bool


FLAVORS: dict[FlavorName, Flavor] = {
    flavor.name: flavor
    for flavor in (
        Flavor(
            "vllm",
            tool_format="native",
            empty_call_content=None,
            tool_choice=True,
            force_tool="tool_choice",
            prefill="continue_final_message",
            prefill_echo=False,
            add_generation_prompt=True,
            stream_usage=True,
            cached_tokens=True,
            top_k=True,
        ),
        Flavor(
            "sglang",
            tool_format="native",
            empty_call_content=None,
            tool_choice=True,
            force_tool="tool_choice",
            prefill="continue_final_message",
            prefill_echo=False,
            add_generation_prompt=False,
            stream_usage=True,
            cached_tokens=True,
            top_k=True,
        ),
        Flavor(
            # Tools need `--jinja`; a template without tool support (its /props say so)
            # switches to the text format at start. `tool_choice` "required" is ignored
            # by such templates and a named choice by every one.
            "llama-server",
            tool_format="native",
            empty_call_content=None,
            tool_choice=True,
            force_tool="json_schema",
            prefill="implicit",
            prefill_echo=True,
            add_generation_prompt=False,
            stream_usage=True,
            cached_tokens=True,
            top_k=True,
        ),
        Flavor(
            # Its default chat handler renders the template and returns the text: it
            # neither parses tool calls nor continues a final assistant message, and an
            # assistant `content` of null is a validation error (answered 500).
            "llama-cpp-python",
            tool_format="text",
            empty_call_content="",
            tool_choice=False,
            force_tool="json_object_schema",
            prefill="raw",
            prefill_echo=False,
            add_generation_prompt=False,
            stream_usage=False,
            cached_tokens=False,
            top_k=True,
        ),
        Flavor(
            # `tool_choice` and `top_k` are not among the OpenAI fields it reads.
            "ollama",
            tool_format="native",
            empty_call_content=None,
            tool_choice=False,
            force_tool="json_schema",
            prefill="implicit",
            prefill_echo=False,
            add_generation_prompt=False,
            stream_usage=True,
            cached_tokens=False,
            top_k=False,
        ),
        Flavor(
            # An unknown server: the OpenAI shapes, vLLM's prefill flag, and a forced
            # choice checked on the way back (a reply without a call is an error).
            "generic",
            tool_format="native",
            empty_call_content=None,
            tool_choice=True,
            force_tool="tool_choice",
            prefill="continue_final_message",
            prefill_echo=False,
            add_generation_prompt=True,
            stream_usage=True,
            cached_tokens=True,
            top_k=True,
        ),
    )
}


@dataclass(frozen=True)
class TemplateSource:
    """A model's Jinja chat template and the special tokens it refers to."""

    source: str
    bos_token: str = ""
    eos_token: str = ""


@dataclass(frozen=True)
class Upstream:
    """What Parley knows about one backend: its flavor, and its model's chat template
    when it has one (for the raw completions path)."""

    flavor: Flavor
    template: TemplateSource | None = None
    detected: bool = True


# -- telling servers apart --------------------------------------------------------------


def _root(client: httpx.AsyncClient) -> str:
    """The server's root as an absolute URL (the base URL without its `/v1`): /props
    and /api/version live there. (A relative path would be joined onto the base URL.)"""
    base = client.base_url
    path = base.path.rstrip("/").removesuffix("/v1") + "/"
    return str(base.copy_with(path=path))


async def _get_json(client: httpx.AsyncClient, url: str) -> Any:
    try:
        response = await client.get(url, timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _owned_by(models: Any) -> str | None:
    data = models.get("data") if isinstance(models, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        owner = data[0].get("owned_by")
        return owner if isinstance(owner, str) else None
    return None


async def detect(client: httpx.AsyncClient) -> FlavorName | None:
    """The server's flavor from what it answers; None when it does not answer at all.

    `/v1/models` names the owner on vLLM ("vllm"), SGLang ("sglang") and llama-server
    ("llamacpp"); Ollama answers `/api/version`; llama-cpp-python's FastAPI app names
    itself in its OpenAPI title.
    """
    models = await _get_json(client, "models")
    if models is None:
        return None
    owner = _owned_by(models)
    known: dict[str, FlavorName] = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama-server"}
    if owner in known:
        return known[owner]
    root = _root(client)
    version = await _get_json(client, root + "api/version")
    if isinstance(version, dict) and "version" in version:
        return "ollama"
    openapi = await _get_json(client, root + "openapi.json")
    title = (openapi or {}).get("info", {}).get("title", "") if isinstance(openapi, dict) else ""
    if "llama.cpp" in str(title):
        return "llama-cpp-python"
    return "generic"


async def llama_server_props(client: httpx.AsyncClient) -> dict[str, Any] | None:
    props = await _get_json(client, _root(client) + "props")
    return props if isinstance(props, dict) else None


def with_props(flavor: Flavor, props: dict[str, Any] | None) -> Upstream:
    """llama-server as its /props describe it: its model's template, and whether that
    template can render and parse tool calls at all."""
    if props is None:
        return Upstream(flavor)
    caps = props.get("chat_template_caps")
    if isinstance(caps, dict) and caps.get("supports_tool_calls") is False:
        flavor = replace(flavor, tool_format="text")
    source = props.get("chat_template")
    template = None
    if isinstance(source, str) and source:
        template = TemplateSource(
            source, str(props.get("bos_token") or ""), str(props.get("eos_token") or "")
        )
    return Upstream(flavor, template)


def load_template(path: Path) -> TemplateSource:
    """A configured chat template: a Jinja file, or a Hugging Face tokenizer_config.json
    (its `chat_template`, the default one when it has several, and its eos token)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return TemplateSource(text)
    config = json.loads(text)
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if not isinstance(template, str):
        raise ValueError(f"{path}: no chat_template")
    return TemplateSource(
        template, _token(config.get("bos_token")), _token(config.get("eos_token"))
    )


def _token(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "</s>", ...}, as older configs write it
        value = value.get("content")
    return value if isinstance(value, str) else ""
