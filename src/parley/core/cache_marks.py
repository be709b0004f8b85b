"""Prompt-caching breakpoints (`cache_control`, api-spec §16): the API's limit on them,
and where they sit in the neutral request, in prompt order."""

from __future__ import annotations

from parley.core.generation import CacheMark, GenerationRequest, Part, ToolResult
from parley.errors import InvalidRequestError

# api-spec §12, §16: "A maximum of 4 blocks with cache_control may be provided."
MAX_BREAKPOINTS = 4


def part_marks(part: Part) -> list[CacheMark]:
    """A part's breakpoints: its own, and those of a tool result's blocks."""
    own: CacheMark | None = getattr(part, "cache", None)
    marks = [own] if own is not None else []
    if isinstance(part, ToolResult):
        marks += [inner.cache for inner in part.content if inner.cache is not None]
    return marks


def cache_marks(request: GenerationRequest) -> list[CacheMark]:
    """Every breakpoint the caller set: tools, system blocks, message blocks (a tool
    result's own blocks too), then the top-level automatic one."""
    marks = [t.cache for t in request.tools if t.cache is not None]
    marks += [p.cache for p in request.system_parts if p.cache is not None]
    for turn in request.turns:
        for part in turn.parts:
            marks += part_marks(part)
    if request.cache is not None:
        # Automatic caching takes one of the four slots, as the API's docs describe it.
        marks.append(request.cache)
    return marks


def check_cache_breakpoints(request: GenerationRequest) -> None:
    found = len(cache_marks(request))
    if found > MAX_BREAKPOINTS:
        raise InvalidRequestError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
