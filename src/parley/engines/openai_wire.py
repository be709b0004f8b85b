"""Chat Completions on the wire: a neutral request as an OpenAI-style body, shaped by
the server's flavor (engines/openai_flavors.py), and an OpenAI-style stream of chunks
(chat or raw completions) as neutral events.

The client's stop sequences are not sent upstream: `finish_reason: "stop"` does not
say which sequence matched (or whether one did), and the OpenAI API takes at most
four. Parley matches them on the streamed text itself (core/stops.py) and closes the
upstream stream at the match, which stops the upstream's generation.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.config import OpenAIBackendConfig
from parley.core.generation import (
    CacheUsage,
    DocumentPart,
    EngineEvent,
    EngineStopReason,
    Finished,
    GenerationRequest,
    ImagePart,
    TextChunk,
    TextPart,
    ThinkingChunk,
    ToolCall,
    ToolCallStart,
    ToolChoice,
    ToolInputChunk,
    ToolResult,
    ToolSpec,
    Turn,
)
from parley.engines.hermes import call_text, result_text
from parley.engines.openai_flavors import FLAVORS, Flavor
from parley.engines.openai_tools import (
    CALL_END,
    ReplyShape,
    forcing_fields,
    reply_shape,
    system_addition,
)
from parley.engines.upstream_errors import status_error
from parley.errors import APIError, InternalServerError

GENERIC = FLAVORS["generic"]

_FINISH_REASONS: dict[str, EngineStopReason] = {
    "stop": "end_turn",
    "eos": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    # A filtered reply simply ends; there is no neutral stop reason for it.
    "content_filter": "end_turn",
}


# -- the request -----------------------------------------------------------------------------


def image_url(image: ImagePart) -> dict[str, Any]:
    data = base64.b64encode(image.data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{image.media_type};base64,{data}"}}


def _content(parts: list[TextPart | ImagePart], joiner: str = "\n\n") -> str | list[dict[str, Any]]:
    """Plain text as a string (what every server takes); with images, a list of parts."""
    if all(isinstance(p, TextPart) for p in parts):
        return joiner.join(p.text for p in parts if isinstance(p, TextPart))
    return [
        {"type": "text", "text": p.text} if isinstance(p, TextPart) else image_url(p)
        for p in parts
        if not isinstance(p, TextPart) or p.text
    ]


def _tool_message(result: ToolResult) -> dict[str, Any]:
    # Tool messages carry text only, and there is no error flag: an error says so.
    text = result.text
    return {
        "role": "tool",
        "tool_call_id": result.tool_use_id,
        "content": f"Error: {text}" if result.is_error else text,
    }


def _turn_messages(turn: Turn, flavor: Flavor) -> list[dict[str, Any]]:
    if flavor.tool_format == "text":
        return [{"role": turn.role, "content": _text_turn_content(turn)}]
    if turn.role == "assistant":
        content = (turn.text or flavor.empty_call_content) if turn.tool_calls else turn.text
        message: dict[str, Any] = {"role": "assistant", "content": content}
        calls = [_tool_call(c) for c in turn.tool_calls]
        if calls:
            message["tool_calls"] = calls
        return [message]
    # Tool results answer the previous assistant turn's calls, so they come first, as
    # `tool` messages; images inside them, and the turn's own text, follow as a user turn.
    messages = [_tool_message(r) for r in turn.tool_results]
    rest: list[TextPart | ImagePart] = []
    for part in turn.parts:
        if isinstance(part, ToolResult):
            rest += [p for p in part.content if isinstance(p, ImagePart)]
        elif isinstance(part, DocumentPart):
            # Chat Completions has no documents: they go as the text Parley reads them into.
            rest.append(TextPart(part.text))
        elif isinstance(part, TextPart | ImagePart):
            rest.append(part)
    if rest or not messages:
        messages.append({"role": turn.role, "content": _content(rest)})
    return messages


def _text_turn_content(turn: Turn) -> str | list[dict[str, Any]]:
    """A turn in the text format: calls and results written out in the Hermes style
    (as Parley's own engine writes them), images kept."""
    pieces: list[TextPart | ImagePart] = []
    for part in turn.parts:
        if isinstance(part, ToolCall):
            pieces.append(TextPart(call_text(part)))
        elif isinstance(part, ToolResult):
            pieces.append(TextPart(result_text(part)))
            pieces += [p for p in part.content if isinstance(p, ImagePart)]
        elif isinstance(part, DocumentPart):
            pieces.append(TextPart(part.text))
        elif isinstance(part, TextPart | ImagePart):
            pieces.append(part)
        # Earlier thinking is not shown to the model (api-spec §8).
    return _content(pieces, "\n" if turn.tool_calls or turn.tool_results else "\n\n")


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.input_json},
    }


def chat_messages(
    request: GenerationRequest, flavor: Flavor = GENERIC, shape: ReplyShape = "plain"
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = request.system
    addition = system_addition(request, shape, flavor)
    if addition:
        system = f"{system}\n\n{addition}" if system else addition
    if system:
        messages.append({"role": "system", "content": system})
    for turn in request.turns:
        messages += _turn_messages(turn, flavor)
    if request.prefill == "":
        messages.pop()  # an empty prefill asks for an ordinary reply
    return messages


def tool_spec(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.input_schema)}
    if tool.description:
        function["description"] = tool.description
    if tool.strict:
        function["strict"] = True  # OpenAI's spelling of a schema-exact input
    return {"type": "function", "function": function}


# `output_config.effort` as OpenAI's `reasoning_effort` (which stops at "high").
_REASONING_EFFORT = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


def tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "any":
        return "required"
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode  # "auto" and "none" are spelled alike


def _tool_fields(request: GenerationRequest, flavor: Flavor, shape: ReplyShape) -> dict[str, Any]:
    if shape == "forced_json":
        return forcing_fields(request, flavor)
    if shape == "text_calls":
        # A call written as text ends the reply (what Parley's own engine does too).
        return {"stop": [CALL_END]}
    if shape != "native":
        return {}
    choice = request.tool_choice
    if choice.mode == "none" and not flavor.tool_choice:
        # A server that does not read `tool_choice` could still call what it is given.
        return {}
    fields: dict[str, Any] = {"tools": [tool_spec(t) for t in request.tools]}
    if flavor.tool_choice:
        fields["tool_choice"] = tool_choice(choice)
        if not choice.parallel and choice.mode != "none":
            fields["parallel_tool_calls"] = False
    return fields


def whole_reply(request: GenerationRequest) -> bool:
    """Whether to ask the upstream for the reply in one piece: the client reads it whole,
    and no stop sequence needs the text as it comes (Parley ends the upstream's
    generation at a match, which only a stream allows, and counts the tokens up to
    it). One JSON body costs a gateway a fraction of a stream of small chunks."""
    return not request.streamed and not request.stop_sequences


def as_chunk(reply: Mapping[str, Any]) -> dict[str, Any]:
    """A whole reply as the one stream chunk that would carry it all: each choice's
    `message` as its `delta`, tool calls numbered as a stream numbers them. Raw
    completion replies (`text`) already have a chunk's shape."""
    choices: list[Any] = []
    for choice in reply.get("choices") or ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if isinstance(message, Mapping):
            delta = {k: v for k, v in message.items() if k != "tool_calls"}
            calls = message.get("tool_calls")
            if isinstance(calls, list) and calls:
                delta["tool_calls"] = [
                    {**call, "index": i}
                    for i, call in enumerate(calls)
                    if isinstance(call, Mapping)
                ]
            choice = {k: v for k, v in choice.items() if k != "message"} | {"delta": delta}
        choices.append(choice)
    return {**reply, "choices": choices}


def sampling_fields(
    request: GenerationRequest, config: OpenAIBackendConfig, flavor: Flavor
) -> dict[str, Any]:
    """Sampling and streaming fields, the same for chat and raw completions."""
    sampling = request.sampling
    streamed = not whole_reply(request)
    fields: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": sampling.temperature,
        "stream": streamed,
    }
    stream_usage = flavor.stream_usage if config.stream_usage is None else config.stream_usage
    if streamed and stream_usage:
        fields["stream_options"] = {"include_usage": True}
    if sampling.top_p is not None:
        fields["top_p"] = sampling.top_p
    if sampling.top_k is not None:
        fields["top_k"] = sampling.top_k  # not OpenAI's; checked against the flavor first
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    return fields


def chat_body(
    request: GenerationRequest,
    config: OpenAIBackendConfig,
    flavor: Flavor = GENERIC,
    *,
    config_thinks: bool = False,
) -> dict[str, Any]:
    shape = reply_shape(request, flavor)
    body: dict[str, Any] = {
        "model": config.model,
        "messages": chat_messages(request, flavor, shape),
        **sampling_fields(request, config, flavor),
        **_tool_fields(request, flavor, shape),
    }
    if request.output_schema is not None and shape != "forced_json":
        # vLLM, SGLang, llama-server and Ollama constrain the reply to the schema. (A
        # forced call is constrained to the call's own shape instead.)
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": "output",
                "schema": dict(request.output_schema),
                "strict": True,
            },
        }
    if config_thinks:
        # Qwen3-style templates switch reasoning on and off with `enable_thinking`
        # (vLLM and SGLang pass `chat_template_kwargs` to the template).
        thinking = request.thinking
        body["chat_template_kwargs"] = {"enable_thinking": thinking.mode != "off"}
        if thinking.mode != "off" and thinking.effort is not None:
            body["reasoning_effort"] = _REASONING_EFFORT[thinking.effort]
    if request.prefill and flavor.prefill == "continue_final_message":
        # vLLM's and SGLang's way to continue the final assistant message rather than
        # start a new one after it (api-spec §5.2: a final assistant turn is a prefill).
        body["continue_final_message"] = True
        if flavor.add_generation_prompt:
            body["add_generation_prompt"] = False
    return body


# -- the reply -------------------------------------------------------------------------------


def chunk_error(error: Any, *, upstream: str) -> APIError:
    """An `{"error": ...}` object sent inside a stream (vLLM and others do)."""
    if not isinstance(error, Mapping):
        return InternalServerError("Internal server error")
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    message = error.get("message")
    return status_error(status, str(message) if message else None, {}, upstream=upstream)


_NO_DELTA: Mapping[str, Any] = {}


@dataclass
class _Call:
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    started: bool = False


@dataclass
class ChatStreamReader:
    """Neutral events from Chat Completions chunks, one chunk at a time.

    Tool calls arrive as fragments keyed by `index`: the first names the function,
    the rest carry pieces of its arguments. Servers send one call after another;
    each streams through as `ToolCallStart` + `ToolInputChunk`s as it comes, and
    a fragment for a call that is already over is an upstream error (the API's
    blocks cannot interleave, api-spec §6.2).
    """

    upstream: str
    # The server reports the prompt's cached part (`prompt_tokens_details.cached_tokens`).
    cached_tokens: bool = True
    # Whether the request asked for thinking: a reasoning model's thinking is
    # relayed only then (with thinking off it is the upstream's business).
    thinking: bool = False
    output_tokens: int = 0
    finish: EngineStopReason | None = None
    usage: Mapping[str, Any] | None = None
    _calls: dict[int, _Call] = field(default_factory=dict)
    _current: int | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[EngineEvent]:
        if "error" in chunk:
            raise chunk_error(chunk["error"], upstream=self.upstream)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.usage = usage
        events: list[EngineEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or _NO_DELTA
            # Chat chunks carry `delta.content`; raw completion chunks carry `text`.
            text = delta.get("content") if "delta" in choice else choice.get("text")
            # vLLM, SGLang and llama-server stream a reasoning model's thinking apart
            # (`reasoning_content`; some servers say `reasoning`).
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            calls = delta.get("tool_calls")
            if text or reasoning or calls:
                # One chunk is about one token; the upstream's own count, when it
                # sends one, replaces this in `finished()`.
                self.output_tokens += 1
            if reasoning and isinstance(reasoning, str) and self.thinking:
                events.append(ThinkingChunk(reasoning, self.output_tokens))
            if text:
                events.append(TextChunk(text, self.output_tokens))
            for fragment in calls or ():
                events += self._tool_fragment(fragment)
            reason = choice.get("finish_reason")
            if reason:
                self.finish = _FINISH_REASONS.get(reason, "end_turn")
        return events

    def _tool_fragment(self, fragment: Mapping[str, Any]) -> list[EngineEvent]:
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        if index != self._current:
            if index in self._calls:
                raise InternalServerError(
                    "Internal server error", headers={"x-should-retry": "true"}
                )
            self._calls[index] = _Call()
            self._current = index
        call = self._calls[index]
        if function.get("name") and call.name is None:
            call.name = function["name"]
        if function.get("arguments"):
            call.arguments.append(function["arguments"])
        if call.name is None:
            return []  # no name yet: hold the arguments until it comes
        events: list[EngineEvent] = []
        if not call.started:
            call.started = True
            events.append(ToolCallStart(call.name, self.output_tokens))
            pending, call.arguments = call.arguments, []
            events += [ToolInputChunk(p, self.output_tokens) for p in pending]
        elif call.arguments:
            pending, call.arguments = call.arguments, []
            events += [ToolInputChunk(p, self.output_tokens) for p in pending]
        return events

    def finished(self) -> Finished:
        if self.finish is None:
            # The stream ended without saying why: the upstream went away mid-reply.
            raise InternalServerError("Internal server error", headers={"x-should-retry": "true"})
        tokens = self.usage.get("completion_tokens") if self.usage else None
        prompt = self.prompt_tokens
        cached = self.cached_prompt_tokens
        if prompt is not None and cached:
            # The API counts cache reads apart from input_tokens (api-spec §16).
            prompt -= cached
        return Finished(
            self.finish,
            tokens if isinstance(tokens, int) else self.output_tokens,
            input_tokens=prompt,
            cache=CacheUsage(read_input_tokens=cached) if cached else None,
        )

    @property
    def prompt_tokens(self) -> int | None:
        tokens = self.usage.get("prompt_tokens") if self.usage else None
        return tokens if isinstance(tokens, int) else None

    @property
    def cached_prompt_tokens(self) -> int:
        details = self.usage.get("prompt_tokens_details") if self.usage else None
        cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
        if not self.cached_tokens or not isinstance(cached, int) or self.prompt_tokens is None:
            return 0
        return max(0, min(cached, self.prompt_tokens))
