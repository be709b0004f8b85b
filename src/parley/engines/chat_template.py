"""A GGUF's own Jinja chat template, with tools rendered the way the model expects.

A template that renders tools itself in the Hermes/Qwen style (it mentions both
`tools` and `<tool_call>`) is given the tools and OpenAI-style messages, as its
authors intended. Any other template (SmolLM2's has no tool support) gets the
same Hermes style written into the system message and the turns' text
(`engines.hermes`), so the model sees one consistent format either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from parley.core.generation import GenerationRequest, Turn
from parley.engines.hermes import (
    CALL_OPEN,
    choice_note,
    function_signature,
    template_messages,
    tools_system_text,
    turn_text,
)

_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_PREFILL_MARK = "\x00parley-prefill\x00"


def output_note(schema: Mapping[str, Any]) -> str:
    text = json.dumps(dict(schema), ensure_ascii=False)
    return f"Reply with JSON only, valid against this JSON schema:\n{text}"


class ChatTemplate:
    """The model's own Jinja chat template from the GGUF metadata (ChatML if absent)."""

    def __init__(self, source: str | None, bos: str, eos: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(source or _CHATML)
        self._specials = {"bos_token": bos, "eos_token": eos}
        self.native_tools = source is not None and "tools" in source and "<tool_call>" in source

    def render(
        self,
        request: GenerationRequest,
        *,
        open_call: bool = False,
        enable_thinking: bool | None = None,
    ) -> str:
        """The prompt text. `open_call`: end it inside a started tool call
        (`<tool_call>\\n`), after any prefill, so the reply is the call's JSON.
        `enable_thinking` is passed to templates that switch reasoning with it (Qwen3)."""
        messages = self._messages(request)
        extra: dict[str, Any] = {}
        if enable_thinking is not None:
            extra["enable_thinking"] = enable_thinking
        if request.tools and self.native_tools:
            extra["tools"] = [function_signature(t) for t in request.tools]
        prefill = request.prefill
        if prefill is None:
            text = self._template.render(
                messages=messages, add_generation_prompt=True, **self._specials, **extra
            )
        else:
            # Render the prefill as a finished assistant turn with a marker at its end,
            # then cut there: the prompt ends inside the assistant turn, whatever the
            # template's syntax, and the reply continues the prefill.
            messages[-1]["content"] = prefill + _PREFILL_MARK
            text = self._template.render(
                messages=messages, add_generation_prompt=False, **self._specials, **extra
            )
            text = text[: text.index(_PREFILL_MARK)]
        if open_call:
            text += ("\n" if prefill else "") + CALL_OPEN
        return text

    def _messages(self, request: GenerationRequest) -> list[dict[str, Any]]:
        system = request.system
        if request.output_schema is not None:
            # The grammar holds the reply to the schema; the model is told what to fill.
            note = output_note(request.output_schema)
            system = f"{system}\n\n{note}" if system else note
        if request.tools:
            addition = (
                choice_note(request.tool_choice)
                if self.native_tools
                else tools_system_text(request.tools, request.tool_choice)
            )
            if addition:
                system = f"{system}\n\n{addition}" if system else addition
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for turn in request.turns:
            messages += self._turn(turn)
        return messages

    def _turn(self, turn: Turn) -> list[dict[str, Any]]:
        if self.native_tools:
            return template_messages(turn)
        return [{"role": turn.role, "content": turn_text(turn)}]
