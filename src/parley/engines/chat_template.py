"""A GGUF's own Jinja chat template, with tools rendered the way the model expects.

A template that renders tools itself in the Hermes/Qwen style (it mentions both
`tools` and `<tool_call>`) is given the tools and OpenAI-style messages, as its
authors intended. Any other template (SmolLM2's has no tool support) gets the
same Hermes style written into the system message and the turns' text
(`engines.hermes`), so the model sees one consistent format either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from parley.core.cache_marks import part_marks
from parley.core.generation import CacheMark, GenerationRequest, Turn
from parley.engines.hermes import (
    CALL_OPEN,
    choice_note,
    function_signature,
    marked_turn_text,
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
_CACHE_MARK = re.compile("\x00parley-cache-([0-9]+)\x00")


@dataclass
class CacheMarks:
    """Where a rendering's cache breakpoints fall (api-spec §16).

    Passed to `ChatTemplate.render`, it writes a sentinel where each breakpoint the
    caller set ends: after the system block or message part that carries it, after the
    tools section for a tool's (Parley's Hermes rendering; with a template that renders
    tools itself, at the end of the system message), and after the last message for
    the request's automatic one. `split` then takes them out again and says where
    each was, as offsets into the clean text.
    """

    ttls: list[str | None] = field(default_factory=list)

    def __call__(self, mark: CacheMark) -> str:
        self.ttls.append(mark.ttl)
        return f"\x00parley-cache-{len(self.ttls) - 1}\x00"

    def all(self, marks: list[CacheMark]) -> str:
        return "".join(self(m) for m in marks)

    def split(self, text: str) -> tuple[str, list[tuple[int, str | None]]]:
        """The text without sentinels, and (offset, ttl) of each breakpoint in it."""
        clean: list[str] = []
        found: list[tuple[int, str | None]] = []
        size = start = 0
        for match in _CACHE_MARK.finditer(text):
            clean.append(text[start : match.start()])
            size += match.start() - start
            found.append((size, self.ttls[int(match.group(1))]))
            start = match.end()
        clean.append(text[start:])
        return "".join(clean), found


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
        marks: CacheMarks | None = None,
    ) -> str:
        """The prompt text. `open_call`: end it inside a started tool call
        (`<tool_call>\\n`), after any prefill, so the reply is the call's JSON.
        `enable_thinking` is passed to templates that switch reasoning with it (Qwen3).
        `marks`: write the request's cache breakpoints into the text (`CacheMarks`)."""
        messages = self._messages(request, marks)
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

    def _messages(
        self, request: GenerationRequest, marks: CacheMarks | None
    ) -> list[dict[str, Any]]:
        system = self._system(request, marks)
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
            if marks is not None and system:
                system += marks.all([t.cache for t in request.tools if t.cache is not None])
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        # A prefill's own marks are left out: the prompt ends inside it anyway. The
        # automatic breakpoint goes after the last message before it.
        prefill = request.prefill is not None
        last = len(request.turns) - (2 if prefill else 1)
        for i, turn in enumerate(request.turns):
            if marks is None or (prefill and i == len(request.turns) - 1):
                messages += self._turn(turn)
                continue
            extra = [request.cache] if i == last and request.cache is not None else []
            messages += self._marked_turn(turn, marks, extra)
        return messages

    def _system(self, request: GenerationRequest, marks: CacheMarks | None) -> str | None:
        parts = request.system_parts
        if marks is None or not parts or "\n\n".join(p.text for p in parts) != request.system:
            return request.system
        return "\n\n".join(p.text + marks.all(part_marks(p)) for p in parts)

    def _turn(self, turn: Turn) -> list[dict[str, Any]]:
        if self.native_tools:
            return template_messages(turn)
        return [{"role": turn.role, "content": turn_text(turn)}]

    def _marked_turn(
        self, turn: Turn, marks: CacheMarks, extra: list[CacheMark]
    ) -> list[dict[str, Any]]:
        if not self.native_tools:
            content = marked_turn_text(turn, marks) + marks.all(extra)
            return [{"role": turn.role, "content": content}]
        # The template writes calls and results its own way: the turn's marks go at the
        # end of its last message's text.
        messages = template_messages(turn)
        found = [m for part in turn.parts for m in part_marks(part)] + extra
        if found:
            messages[-1]["content"] = (messages[-1].get("content") or "") + marks.all(found)
        return messages
