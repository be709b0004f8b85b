"""Prompt sizes estimated before an upstream has read the prompt (OpenAI-style servers
report theirs only at the end of a reply, which then replaces the estimate)."""

from __future__ import annotations

import json
import math

from parley.core.generation import (
    DocumentPart,
    GenerationRequest,
    ImagePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
)


def estimate_tokens(text: str) -> int:
    # About four characters a token for English with BPE vocabularies; an estimate is
    # all an OpenAI-style server offers before it has read the prompt.
    return math.ceil(len(text) / 4)


def estimate_image_tokens(image: ImagePart) -> int:
    # Anthropic's vision guide: about width * height / 750, images being scaled down
    # to at most about 1,600 tokens' worth; an image of unknown size counts as that.
    if image.width and image.height:
        return min(1600, math.ceil(image.width * image.height / 750))
    return 1600


def _part_tokens(part: Part) -> int:
    if isinstance(part, TextPart | DocumentPart):
        return estimate_tokens(part.text)
    if isinstance(part, ImagePart):
        return estimate_image_tokens(part)
    if isinstance(part, ToolCall):
        return 4 + estimate_tokens(part.name + part.input_json)
    if isinstance(part, ThinkingPart):
        return estimate_tokens(part.thinking or part.data or "")
    return 4 + sum(_part_tokens(p) for p in part.content)


def estimate_input_tokens(request: GenerationRequest) -> int:
    """The prompt's size before the upstream reports it: content, plus a few tokens
    of chat-template framing per turn and the tools' definitions."""
    per_turn = 4
    total = 3
    if request.system:
        total += per_turn + estimate_tokens(request.system)
    for turn in request.turns:
        total += per_turn + sum(_part_tokens(p) for p in turn.parts)
    for tool in request.tools:
        spec = json.dumps(dict(tool.input_schema), separators=(",", ":"))
        total += 8 + estimate_tokens(tool.name + (tool.description or "") + spec)
    return total
